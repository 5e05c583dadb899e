/**
 * Celery's `auth` serializer (`celery.security`): an RSA-PSS signature over
 * the serialized body, wrapped with the signer id and the inner content
 * type, all base64 text. Both wire layouts are supported:
 *
 * - `celery-5.2` (Celery ≤ 5.4): signer id and signature raw; the signature
 *   has the fixed length of the RSA modulus because it may contain the
 *   separator.
 * - `celery-5.5` (Celery ≥ 5.5): signer id and signature each base64, so the
 *   payload splits cleanly on the separator (at most 4 splits).
 *
 * The signature covers the inner body only — not the content type, not the
 * headers. `message-signature.ts` adds the header signature that closes
 * that gap for Celeriac peers.
 */
import { constants, createPublicKey, sign as cryptoSign, verify as cryptoVerify, type KeyObject, type X509Certificate } from 'node:crypto';
import { DEFAULT_DECODE_LIMITS } from '../limits.ts';
import { certificateValidityProblem, describeCertificate, MIN_RSA_BITS, type CertStore, type CertStoreEntry } from './cert-store.ts';
import { SignatureError, SigningError } from './errors.ts';
import { celerySignerId } from './signer-id.ts';
import { decodeBase64BytesStrict, decodeUtf8Strict } from './util.ts';

/** Content type of a body produced by the `auth` serializer. */
export const CELERY_AUTH_CONTENT_TYPE = 'application/data';
/** Content encoding of a body produced by the `auth` serializer. */
export const CELERY_AUTH_CONTENT_ENCODING = 'utf-8';

/** Which Celery version's wire layout to produce or that was detected. */
export type CeleryAuthLayout = 'celery-5.2' | 'celery-5.5';

/** The signing identity: RSA private key, its certificate, digest and layout. */
export interface CeleryAuthSigner {
  /** RSA private key matching `cert`. */
  key: KeyObject;
  /** Certificate of the key; its signer id goes into every message. */
  cert: X509Certificate;
  /** Hash for RSA-PSS and MGF1: `sha256` (default, Celery's default), `sha384` or `sha512`. */
  digest?: string;
  /** `celery-5.2` for Celery ≤ 5.4 peers, `celery-5.5` for Celery ≥ 5.5 peers. */
  layout: CeleryAuthLayout;
}

/** Options of `verifyCeleryAuth`. */
export interface CeleryAuthVerifyOptions {
  /** Hash the signer used (`security_digest`); default `sha256`. */
  digest?: string;
  /** Instant to check certificate validity at, ms since epoch (default now). */
  now?: number;
  /** When set, only these signer ids are accepted even if others are in the store. */
  allowedSigners?: ReadonlySet<string>;
  /** Largest accepted body (the base64 text), bytes; default fits a 4 MiB inner body. */
  maxBytes?: number;
}

/** A verified `auth` body. */
export interface VerifiedCeleryAuth {
  /** Signer id of the certificate that verified the signature. */
  signerId: string;
  /** Wire layout the message used. */
  layout: CeleryAuthLayout;
  /** Content type of the inner body (e.g. `application/json`). Not covered by Celery's signature. */
  contentType: string;
  /** Content encoding of the inner body (e.g. `utf-8`). Not covered by Celery's signature. */
  contentEncoding: string;
  /** The signed inner body. */
  inner: Buffer;
}

const SEP = Buffer.from([0x00, 0x01]);
const DEFAULT_MAX_BYTES = Math.ceil((DEFAULT_DECODE_LIMITS.maxBytes * 4) / 3) + 16 * 1024;
const DIGESTS: ReadonlyMap<string, string> = new Map([
  ['sha256', 'sha256'],
  ['sha384', 'sha384'],
  ['sha512', 'sha512'],
]);
// Content types and encodings are short tokens; anything else is a forgery or garbage.
const TOKEN = /^[\x21-\x7e]{1,128}$/;

/** Normalize a digest name (`SHA256`, `sha-256` → `sha256`); `undefined` if not allowed. */
function normalizeDigest(name: string | undefined): string | undefined {
  return DIGESTS.get((name ?? 'sha256').toLowerCase().replace(/[-_]/g, ''));
}

function pssSign(digest: string, data: Buffer, key: KeyObject): Buffer {
  return cryptoSign(digest, data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_MAX_SIGN });
}

/** RSA-PSS verification with MGF1 of the same hash and any salt length (Celery signs with the maximum). */
export function pssVerify(digest: string, data: Buffer, key: KeyObject, signature: Buffer): boolean {
  try {
    return cryptoVerify(digest, data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_AUTO }, signature);
  } catch {
    // OpenSSL rejects some malformed signatures with an exception instead of `false`.
    return false;
  }
}

const checkedPairs = new WeakMap<KeyObject, WeakSet<X509Certificate>>();

/** Refuse a non-RSA, short, or mismatched key before producing messages nobody can verify. */
function assertSignerKey(key: KeyObject, cert: X509Certificate): void {
  if (checkedPairs.get(key)?.has(cert)) return;
  if (key.type !== 'private' || key.asymmetricKeyType !== 'rsa') {
    throw new SigningError(`the signing key must be an RSA private key, got a ${key.type} ${key.asymmetricKeyType ?? ''} key`.replace(/ +/g, ' '), {
      hint: 'Celery message signing uses RSA-PSS: configure the RSA private key of the signing certificate',
    });
  }
  const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
  if (bits < MIN_RSA_BITS) {
    throw new SigningError(`the signing key has ${bits} bits, below the ${MIN_RSA_BITS}-bit minimum`, {
      hint: 'generate a new RSA key of 2048 bits or more and a certificate for it',
    });
  }
  const mine = createPublicKey(key).export({ format: 'der', type: 'spki' });
  const theirs = cert.publicKey.export({ format: 'der', type: 'spki' });
  if (!mine.equals(theirs)) {
    throw new SigningError(`the signing key does not belong to certificate ${JSON.stringify(celerySignerId(cert))}`, {
      hint: 'configure the certificate that was issued for this private key',
    });
  }
  let set = checkedPairs.get(key);
  if (!set) checkedPairs.set(key, (set = new WeakSet()));
  set.add(cert);
}

/**
 * Sign a serialized body the way Celery's `auth` serializer does and return
 * the ASCII base64 text that becomes the message body (send it with content
 * type `application/data`, encoding `utf-8`).
 *
 * Throws `SigningError` for a non-RSA or mismatched key, an unsupported
 * digest, a separator (0x00 0x01) inside a field where the layout cannot
 * carry it, or (layout `celery-5.2`) an inner body that is not UTF-8, which
 * Celery ≤ 5.4 would corrupt.
 */
export function signCeleryAuth(inner: Buffer, innerContentType: string, innerContentEncoding: string, signer: CeleryAuthSigner): Buffer {
  const digest = normalizeDigest(signer.digest);
  if (!digest) {
    throw new SigningError(`digest ${JSON.stringify(signer.digest)} is not supported`, { hint: 'use sha256 (Celery\'s default), sha384 or sha512' });
  }
  if (signer.layout !== 'celery-5.2' && signer.layout !== 'celery-5.5') {
    throw new SigningError(`unknown auth layout ${JSON.stringify(signer.layout)}`, { hint: 'use celery-5.2 for Celery ≤ 5.4 peers, celery-5.5 for Celery ≥ 5.5' });
  }
  assertSignerKey(signer.key, signer.cert);
  if (!TOKEN.test(innerContentType) || !TOKEN.test(innerContentEncoding)) {
    throw new SigningError('the inner content type and encoding must be short printable ASCII tokens', { hint: 'pass e.g. application/json and utf-8' });
  }
  const signerId = Buffer.from(celerySignerId(signer.cert), 'utf8');
  const signature = pssSign(digest, inner, signer.key);
  let parts: Buffer[];
  if (signer.layout === 'celery-5.2') {
    // Celery ≤ 5.4 splits the tail on the separator and decodes the body as text.
    if (inner.includes(SEP)) {
      throw new SigningError('the body contains the bytes 0x00 0x01, which the celery-5.2 auth layout cannot carry', {
        hint: 'use the json serializer, or the celery-5.5 layout if every peer runs Celery ≥ 5.5',
      });
    }
    if (decodeUtf8Strict(inner) === undefined) {
      throw new SigningError('the body is not UTF-8 text, which Celery ≤ 5.4 cannot verify', {
        hint: 'use the json serializer, or the celery-5.5 layout if every peer runs Celery ≥ 5.5',
      });
    }
    if (signerId.includes(SEP)) throw new SigningError('the certificate\'s signer id contains 0x00 0x01', { hint: 'issue a certificate with a plain-text issuer name' });
    parts = [signerId, signature, Buffer.from(innerContentType, 'latin1'), Buffer.from(innerContentEncoding, 'latin1'), inner];
  } else {
    parts = [
      Buffer.from(signerId.toString('base64'), 'latin1'),
      Buffer.from(signature.toString('base64'), 'latin1'),
      Buffer.from(innerContentType, 'latin1'),
      Buffer.from(innerContentEncoding, 'latin1'),
      inner,
    ];
  }
  const payload = Buffer.concat(parts.flatMap((p, i) => (i === 0 ? [p] : [SEP, p])));
  return Buffer.from(payload.toString('base64'), 'latin1');
}

function fail(reason: ConstructorParameters<typeof SignatureError>[0], detail: string, hint?: string): never {
  throw new SignatureError(reason, detail, hint ? { hint } : undefined);
}

/** Shorten an untrusted signer id for an error message. */
function showId(id: Buffer | string): string {
  const text = typeof id === 'string' ? id : id.toString('latin1');
  return JSON.stringify(text.length > 120 ? `${text.slice(0, 120)}…` : text);
}

function splitAll(buf: Buffer, maxSplits: number): Buffer[] {
  const out: Buffer[] = [];
  let start = 0;
  while (out.length < maxSplits) {
    const i = buf.indexOf(SEP, start);
    if (i < 0) break;
    out.push(buf.subarray(start, i));
    start = i + SEP.length;
  }
  out.push(buf.subarray(start));
  return out;
}

function token(field: Buffer | undefined, what: string): string {
  const text = field?.toString('latin1');
  if (text === undefined || !TOKEN.test(text)) fail('malformed', `the ${what} field of the auth payload is missing or not a printable token`);
  return text;
}

/**
 * Verify a Celery `auth` body (the base64 text of a message with content
 * type `application/data`) against a certificate store. The layout is
 * detected: in `celery-5.2` the first field is the signer id itself (text
 * that always contains a space, so never strict base64); in `celery-5.5`
 * it is strict base64 of the signer id.
 *
 * The certificate's validity is checked again at `opts.now`, RSA-PSS
 * (MGF1 with the same hash, any salt length) is verified over the inner
 * body, and the inner body is returned with its content type and
 * encoding. Throws `SignatureError` with reason `malformed`,
 * `unknown-signer`, `signer-not-allowed`, `expired-certificate`,
 * `certificate-not-yet-valid`, `unsupported-algorithm` or
 * `bad-signature`; never anything else.
 */
export function verifyCeleryAuth(body: Buffer, store: CertStore, opts: CeleryAuthVerifyOptions = {}): VerifiedCeleryAuth {
  const digest = normalizeDigest(opts.digest);
  if (!digest) fail('unsupported-algorithm', `digest ${JSON.stringify(opts.digest)} is not supported`, 'use sha256, sha384 or sha512');
  const maxBytes = opts.maxBytes ?? DEFAULT_MAX_BYTES;
  if (!Buffer.isBuffer(body)) fail('malformed', 'the auth body is not a byte buffer');
  if (body.length > maxBytes) fail('malformed', `the auth body of ${body.length} bytes exceeds the ${maxBytes}-byte limit`);
  const payload = decodeBase64BytesStrict(body);
  if (!payload) fail('malformed', 'the auth body is not base64 text', 'the sender must use the auth serializer (content type application/data)');

  const firstSep = payload.indexOf(SEP);
  if (firstSep <= 0) fail('malformed', 'the auth payload has no signer field');
  const first = payload.subarray(0, firstSep);

  let layout: CeleryAuthLayout;
  let entry: CertStoreEntry | undefined;
  let shownId: string;
  const firstDecoded = decodeBase64BytesStrict(first);
  if (firstDecoded) {
    layout = 'celery-5.5';
    const decoded = decodeUtf8Strict(firstDecoded);
    shownId = decoded ?? first.toString('latin1');
    entry = decoded === undefined ? undefined : store.get(decoded);
  } else {
    layout = 'celery-5.2';
    const text = decodeUtf8Strict(first);
    shownId = text ?? first.toString('latin1');
    entry = text === undefined ? undefined : store.get(text);
  }
  if (!entry) {
    fail('unknown-signer', `the message is signed by ${showId(shownId)}, which is not in the certificate store`, "add the sender's certificate to the store if it is trusted");
  }

  let signature: Buffer;
  let tail: Buffer[];
  if (layout === 'celery-5.5') {
    const fields = splitAll(payload.subarray(firstSep + SEP.length), 3);
    if (fields.length !== 4) fail('malformed', 'the auth payload has fewer than 5 fields');
    const sig = decodeBase64BytesStrict(fields[0]!);
    if (!sig) fail('malformed', 'the signature field is not base64');
    signature = sig;
    tail = fields.slice(1);
  } else {
    // The raw signature may contain the separator: its length is the modulus length.
    const sigStart = firstSep + SEP.length;
    const sigEnd = sigStart + entry.modulusBytes;
    if (payload.length < sigEnd + SEP.length || !payload.subarray(sigEnd, sigEnd + SEP.length).equals(SEP)) {
      fail('malformed', 'the auth payload is too short for the signature or lacks the separator after it');
    }
    signature = payload.subarray(sigStart, sigEnd);
    // Celery ≤ 5.4 keeps the third part only, so a body with a separator never verifies there; refuse it here too.
    tail = splitAll(payload.subarray(sigEnd + SEP.length), 3);
    if (tail.length !== 3) fail('malformed', 'the auth payload does not have exactly content type, encoding and body after the signature');
  }
  const contentType = token(tail[0], 'content type');
  const contentEncoding = token(tail[1], 'content encoding');
  const inner = Buffer.from(tail[2]!);

  if (opts.allowedSigners && !opts.allowedSigners.has(entry.signerId)) {
    fail('signer-not-allowed', `signer ${showId(entry.signerId)} is in the certificate store but not allowed here`, 'add it to the allowed signers if it should be accepted');
  }
  const problem = certificateValidityProblem(entry, opts.now ?? Date.now());
  if (problem === 'expired-certificate') {
    fail(problem, `the certificate of signer ${showId(entry.signerId)} expired on ${new Date(entry.notAfter).toISOString()}`, 'renew the certificate and reload the store');
  }
  if (problem === 'certificate-not-yet-valid') {
    fail(problem, `the certificate of signer ${showId(entry.signerId)} is not valid before ${new Date(entry.notBefore).toISOString()}`, 'check the clocks');
  }
  if (signature.length !== entry.modulusBytes || !pssVerify(digest, inner, entry.cert.publicKey, signature)) {
    fail('bad-signature', `the signature of signer ${showId(entry.signerId)} does not verify`, 'the message was altered or forged; it must be discarded');
  }
  return { signerId: entry.signerId, layout, contentType, contentEncoding, inner };
}

/**
 * Check that a key and certificate can sign `auth` messages (RSA ≥ 2048
 * bits, matching, certificate valid now). Throws `SigningError` or
 * `CertificateError`. Useful at start-up to fail early.
 */
export function checkCeleryAuthSigner(signer: Pick<CeleryAuthSigner, 'key' | 'cert'>, now: number = Date.now()): void {
  describeCertificate(signer.cert, 'the signing certificate', { now });
  assertSignerKey(signer.key, signer.cert);
}
