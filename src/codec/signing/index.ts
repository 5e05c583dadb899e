/**
 * Message integrity: Celery's `auth` serializer (RSA-PSS over the body,
 * both wire layouts), the certificate store, Celeriac's header signature
 * (Ed25519, HMAC-SHA256 or RSA-PSS over headers, body hash and a validity
 * window) and signing key rings.
 */
export {
  CertificateError,
  KeyRingError,
  SignatureError,
  SigningError,
  type CertificateFailure,
  type SignatureFailure,
} from './errors.ts';
export { celerySignerId, certificateFields } from './signer-id.ts';
export type { CertificateFields, NameAttribute } from './der.ts';
export {
  CertStore,
  certificateValidityProblem,
  certStoreFromCertificates,
  certStoreFromPems,
  DEFAULT_NOT_BEFORE_SKEW_MS,
  describeCertificate,
  loadCertStore,
  MIN_RSA_BITS,
  parsePemCertificates,
  type CertStoreEntry,
  type CertStoreOptions,
} from './cert-store.ts';
export {
  CELERY_AUTH_CONTENT_ENCODING,
  CELERY_AUTH_CONTENT_TYPE,
  checkCeleryAuthSigner,
  signCeleryAuth,
  verifyCeleryAuth,
  type CeleryAuthLayout,
  type CeleryAuthSigner,
  type CeleryAuthVerifyOptions,
  type VerifiedCeleryAuth,
} from './celery-auth.ts';
export {
  generateSigningKey,
  MIN_HMAC_SECRET_BYTES,
  parseSigningKeyRing,
  SigningKey,
  SigningKeyRing,
  type GeneratedSigningKey,
  type SigningKeyEntryType,
  type SigningKeyKind,
} from './keyring.ts';
export {
  canonicalSigningInput,
  certStoreVerifier,
  combineVerifiers,
  DEFAULT_CLOCK_SKEW_MS,
  MESSAGE_SIGNATURE_ALGS,
  rsaMessageSigningKey,
  SIGNATURE_HEADER,
  SIGNED_HEADERS,
  SIGNED_HEADERS_V1,
  SIGNED_PROPERTIES,
  MESSAGE_SIGNATURE_VERSION,
  signMessage,
  verifyMessage,
  type CertStoreVerifierOptions,
  type MessageSignatureAlg,
  type MessageSignatureClaims,
  type MessageSignatureHeader,
  type MessageSigningKey,
  type MessageVerifier,
  type SignMessageOptions,
  type VerifyMessageOptions,
} from './message-signature.ts';
