/**
 * X.509 v3 certificates from Node's built-in crypto: a minimal DER writer
 * and the three shapes Celeriac needs —
 *
 * - self-signed certificates for Celery's `auth` message signing (RSA,
 *   sha256WithRSAEncryption; Celery identifies the signer by the issuer's
 *   attribute values and the serial number, so both are caller-chosen);
 * - CA certificates (basicConstraints CA:true, keyUsage keyCertSign, cRLSign);
 * - leaf certificates signed by such a CA, with subjectAltName DNS/IP
 *   entries and extendedKeyUsage serverAuth/clientAuth, for TLS.
 *
 * Keys: RSA (≥ 2048 bits), ECDSA P-256 / P-384, Ed25519. The signature
 * algorithm follows the signing key: RSA → sha256WithRSAEncryption, P-256
 * → ecdsa-with-SHA256, P-384 → ecdsa-with-SHA384, Ed25519 → Ed25519.
 * Validity dates are free (past dates make expired certificates for tests).
 */
import { createHash, createPublicKey, generateKeyPair as generateKeyPairCb, randomBytes, sign, X509Certificate, type KeyObject } from 'node:crypto';
import { isIP } from 'node:net';
import { promisify } from 'node:util';

const generateKeyPairAsync = promisify(generateKeyPairCb);

// ---------------------------------------------------------------- DER writer

/** DER length octets. */
function derLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

/** A TLV with the given tag byte. */
export function derTlv(tag: number, content: Buffer): Buffer {
  return Buffer.concat([Buffer.from([tag]), derLength(content.length), content]);
}

/** SEQUENCE of the given elements. */
export const derSequence = (...items: Buffer[]): Buffer => derTlv(0x30, Buffer.concat(items));
/** SET OF, sorted as DER requires. */
export const derSet = (...items: Buffer[]): Buffer => derTlv(0x31, Buffer.concat([...items].sort(Buffer.compare)));
/** NULL. */
export const derNull = (): Buffer => Buffer.from([0x05, 0x00]);
/** BOOLEAN. */
export const derBoolean = (v: boolean): Buffer => Buffer.from([0x01, 0x01, v ? 0xff : 0x00]);
/** OCTET STRING. */
export const derOctetString = (b: Buffer): Buffer => derTlv(0x04, b);
/** BIT STRING with no unused bits. */
export const derBitString = (b: Buffer, unusedBits = 0): Buffer => derTlv(0x03, Buffer.concat([Buffer.from([unusedBits]), b]));
/** Context-specific explicit tag `[n]` around an encoded element. */
export const derExplicit = (n: number, inner: Buffer): Buffer => derTlv(0xa0 | n, inner);

/** INTEGER from a non-negative bigint (minimal two's complement). */
export function derInteger(v: bigint | number): Buffer {
  let n = BigInt(v);
  if (n < 0n) throw new RangeError('negative INTEGER not supported');
  const bytes: number[] = [];
  do {
    bytes.unshift(Number(n & 0xffn));
    n >>= 8n;
  } while (n > 0n);
  if (bytes[0]! & 0x80) bytes.unshift(0);
  return derTlv(0x02, Buffer.from(bytes));
}

/** OBJECT IDENTIFIER from dotted text. */
export function derOid(oid: string): Buffer {
  const parts = oid.split('.').map((p) => BigInt(p));
  if (parts.length < 2) throw new RangeError(`bad OID ${oid}`);
  const out: number[] = [Number(parts[0]! * 40n + parts[1]!)];
  for (const p of parts.slice(2)) {
    const chunk: number[] = [];
    let v = p;
    do {
      chunk.unshift(Number(v & 0x7fn));
      v >>= 7n;
    } while (v > 0n);
    for (let i = 0; i < chunk.length - 1; i++) chunk[i]! |= 0x80;
    out.push(...chunk);
  }
  return derTlv(0x06, Buffer.from(out));
}

const derUtf8 = (s: string): Buffer => derTlv(0x0c, Buffer.from(s, 'utf8'));
const derPrintable = (s: string): Buffer => derTlv(0x13, Buffer.from(s, 'ascii'));
const derIa5 = (s: string): Buffer => derTlv(0x16, Buffer.from(s, 'ascii'));

/** UTCTime for 1950–2049, GeneralizedTime otherwise (RFC 5280 §4.1.2.5), whole seconds, UTC. */
export function derTime(d: Date): Buffer {
  const y = d.getUTCFullYear();
  const pad = (n: number, w = 2) => String(n).padStart(w, '0');
  const rest = `${pad(d.getUTCMonth() + 1)}${pad(d.getUTCDate())}${pad(d.getUTCHours())}${pad(d.getUTCMinutes())}${pad(d.getUTCSeconds())}Z`;
  if (y >= 1950 && y < 2050) return derTlv(0x17, Buffer.from(`${pad(y % 100)}${rest}`, 'ascii'));
  return derTlv(0x18, Buffer.from(`${pad(y, 4)}${rest}`, 'ascii'));
}

// ---------------------------------------------------------------- names

/** Attribute short names understood in distinguished names. */
export const NAME_ATTRIBUTES: Readonly<Record<string, { oid: string; type: 'utf8' | 'printable' | 'ia5' }>> = {
  C: { oid: '2.5.4.6', type: 'printable' },
  ST: { oid: '2.5.4.8', type: 'utf8' },
  L: { oid: '2.5.4.7', type: 'utf8' },
  O: { oid: '2.5.4.10', type: 'utf8' },
  OU: { oid: '2.5.4.11', type: 'utf8' },
  CN: { oid: '2.5.4.3', type: 'utf8' },
  serialNumber: { oid: '2.5.4.5', type: 'printable' },
  emailAddress: { oid: '1.2.840.113549.1.9.1', type: 'ia5' },
  DC: { oid: '0.9.2342.19200300.100.1.25', type: 'ia5' },
};

/**
 * A distinguished name: an ordered list of `[attribute, value]` pairs
 * (`[['C','XX'],['O','Example'],['CN','signer']]`) or an object whose
 * insertion order is kept. Order matters: Celery's signer id is the
 * issuer's values in this order.
 */
export type DistinguishedName = readonly (readonly [string, string])[] | Readonly<Record<string, string>>;

function encodeName(dn: DistinguishedName): Buffer {
  const pairs = Array.isArray(dn) ? (dn as readonly (readonly [string, string])[]) : Object.entries(dn as Record<string, string>);
  const rdns = pairs.map(([attr, value]) => {
    const a = NAME_ATTRIBUTES[attr];
    if (!a) throw new RangeError(`unknown name attribute ${attr}; use one of ${Object.keys(NAME_ATTRIBUTES).join(', ')}`);
    if (a.type !== 'utf8' && !/^[\x20-\x7e]*$/.test(value)) throw new RangeError(`${attr} must be ASCII`);
    if (attr === 'C' && !/^[A-Za-z]{2}$/.test(value)) throw new RangeError('C (country) must be a two-letter code');
    const v = a.type === 'utf8' ? derUtf8(value) : a.type === 'printable' ? derPrintable(value) : derIa5(value);
    return derSet(derSequence(derOid(a.oid), v));
  });
  return derSequence(...rdns);
}

// ---------------------------------------------------------------- keys

/** Key types for generated certificates. */
export type KeyAlgorithm = 'rsa' | 'ec-p256' | 'ec-p384' | 'ed25519';

/** A key pair and its PEM forms (PKCS#8 private key, SPKI public key). */
export interface GeneratedKeyPair {
  algorithm: KeyAlgorithm;
  privateKey: KeyObject;
  publicKey: KeyObject;
  privateKeyPem: string;
  publicKeyPem: string;
}

/** Generate a key pair (RSA: `rsaBits`, default 2048, minimum 2048). */
export async function generateKeyPair(algorithm: KeyAlgorithm = 'ec-p256', opts: { rsaBits?: number } = {}): Promise<GeneratedKeyPair> {
  let pair: { privateKey: KeyObject; publicKey: KeyObject };
  switch (algorithm) {
    case 'rsa': {
      const bits = opts.rsaBits ?? 2048;
      if (!Number.isInteger(bits) || bits < 2048) throw new RangeError('RSA keys must have at least 2048 bits');
      pair = await generateKeyPairAsync('rsa', { modulusLength: bits, publicExponent: 0x10001 });
      break;
    }
    case 'ec-p256':
      pair = await generateKeyPairAsync('ec', { namedCurve: 'prime256v1' });
      break;
    case 'ec-p384':
      pair = await generateKeyPairAsync('ec', { namedCurve: 'secp384r1' });
      break;
    case 'ed25519':
      pair = await generateKeyPairAsync('ed25519');
      break;
    default:
      throw new RangeError(`unknown key algorithm ${String(algorithm)}`);
  }
  return {
    algorithm,
    ...pair,
    privateKeyPem: pair.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    publicKeyPem: pair.publicKey.export({ type: 'spki', format: 'pem' }) as string,
  };
}

interface SigAlg {
  algId: Buffer;
  hash: string | null;
}

function signatureAlgorithm(key: KeyObject): SigAlg {
  switch (key.asymmetricKeyType) {
    case 'rsa':
      return { algId: derSequence(derOid('1.2.840.113549.1.1.11'), derNull()), hash: 'sha256' };
    case 'ec': {
      const curve = key.asymmetricKeyDetails?.namedCurve;
      if (curve === 'secp384r1') return { algId: derSequence(derOid('1.2.840.10045.4.3.3')), hash: 'sha384' };
      if (curve === 'prime256v1') return { algId: derSequence(derOid('1.2.840.10045.4.3.2')), hash: 'sha256' };
      throw new RangeError(`unsupported EC curve ${String(curve)}; use P-256 or P-384`);
    }
    case 'ed25519':
      return { algId: derSequence(derOid('1.3.101.112')), hash: null };
    default:
      throw new RangeError(`unsupported signing key type ${String(key.asymmetricKeyType)}; use RSA, EC P-256/P-384 or Ed25519`);
  }
}

function publicKeyOf(key: KeyObject): KeyObject {
  return key.type === 'private' ? createPublicKey(key) : key;
}

/** subjectPublicKeyInfo DER of a key. */
function spki(key: KeyObject): Buffer {
  return publicKeyOf(key).export({ type: 'spki', format: 'der' });
}

/** RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits. */
export function keyIdentifier(key: KeyObject): Buffer {
  const der = spki(key);
  // SPKI = SEQ { algId SEQ, BIT STRING }: walk to the BIT STRING's contents.
  const readLen = (off: number): [number, number] => {
    const b = der[off]!;
    if (b < 0x80) return [b, off + 1];
    const n = b & 0x7f;
    let len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + der[off + 1 + i]!;
    return [len, off + 1 + n];
  };
  const [, seqBody] = readLen(1);
  const [algLen, algBody] = readLen(seqBody + 1);
  const bitOff = algBody + algLen;
  const [bitLen, bitBody] = readLen(bitOff + 1);
  return createHash('sha1').update(der.subarray(bitBody + 1, bitBody + bitLen)).digest();
}

// ---------------------------------------------------------------- extensions

/** keyUsage bits (RFC 5280 §4.2.1.3). */
export type KeyUsage = 'digitalSignature' | 'nonRepudiation' | 'keyEncipherment' | 'dataEncipherment' | 'keyAgreement' | 'keyCertSign' | 'cRLSign';
const KEY_USAGE_BITS: Record<KeyUsage, number> = {
  digitalSignature: 0, nonRepudiation: 1, keyEncipherment: 2, dataEncipherment: 3, keyAgreement: 4, keyCertSign: 5, cRLSign: 6,
};

/** extendedKeyUsage purposes. */
export type ExtendedKeyUsage = 'serverAuth' | 'clientAuth' | 'codeSigning' | 'emailProtection';
const EKU_OIDS: Record<ExtendedKeyUsage, string> = {
  serverAuth: '1.3.6.1.5.5.7.3.1', clientAuth: '1.3.6.1.5.5.7.3.2', codeSigning: '1.3.6.1.5.5.7.3.3', emailProtection: '1.3.6.1.5.5.7.3.4',
};

function extension(oid: string, critical: boolean, value: Buffer): Buffer {
  return derSequence(derOid(oid), ...(critical ? [derBoolean(true)] : []), derOctetString(value));
}

function keyUsageValue(usages: readonly KeyUsage[]): Buffer {
  let bits = 0;
  for (const u of usages) bits |= 1 << (15 - KEY_USAGE_BITS[u]);
  // Named bit list: drop trailing zero bits (DER), then trailing zero bytes.
  const bytes = [bits >> 8, bits & 0xff];
  while (bytes.length > 1 && bytes[bytes.length - 1] === 0) bytes.pop();
  const last = bytes[bytes.length - 1]!;
  let unused = 0;
  if (last !== 0) while (((last >> unused) & 1) === 0) unused++;
  return derBitString(Buffer.from(bytes), unused);
}

function ipBytes(ip: string): Buffer {
  if (isIP(ip) === 4) return Buffer.from(ip.split('.').map(Number));
  const [head = '', tail] = ip.split('::');
  const a = head ? head.split(':') : [];
  const b = tail ? tail.split(':') : [];
  const groups = tail === undefined ? a : [...a, ...Array(8 - a.length - b.length).fill('0'), ...b];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g as string, 16), i * 2));
  return out;
}

function sanValue(names: readonly string[]): Buffer {
  return derSequence(...names.map((n) => {
    const host = n.replace(/^\[|\]$/g, '');
    if (isIP(host)) return derTlv(0x87, ipBytes(host)); // [7] iPAddress
    if (!/^[A-Za-z0-9*]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?$/.test(host)) {
      throw new RangeError(`subjectAltName ${JSON.stringify(n)} is not a DNS name or IP address`);
    }
    return derTlv(0x82, Buffer.from(host, 'ascii')); // [2] dNSName
  }));
}

// ---------------------------------------------------------------- certificates

/** Everything that goes into one certificate. */
export interface CertificateSpec {
  subject: DistinguishedName;
  /** Default: the subject (self-signed). */
  issuer?: DistinguishedName;
  /** Public key of the subject (a private key is accepted; its public half is used). */
  subjectKey: KeyObject;
  /** Private key that signs the certificate (the issuer's). */
  signingKey: KeyObject;
  /** Serial number; default 16 random bytes (positive). */
  serialNumber?: bigint | number;
  /** Default: now − 5 minutes (clock skew). */
  notBefore?: Date;
  /** Default: `notBefore` + `validityDays`. */
  notAfter?: Date;
  /** Default 365. */
  validityDays?: number;
  /** basicConstraints CA:true (with optional path length). */
  isCa?: boolean;
  pathLength?: number;
  keyUsage?: readonly KeyUsage[];
  extendedKeyUsage?: readonly ExtendedKeyUsage[];
  /** DNS names and IP addresses for subjectAltName. */
  subjectAltNames?: readonly string[];
  /** Add subject/authority key identifiers (default true). */
  keyIdentifiers?: boolean;
}

/** A certificate in DER and PEM, parsed by Node. */
export interface IssuedCertificate {
  der: Buffer;
  pem: string;
  x509: X509Certificate;
  serialNumber: bigint;
}

function randomSerial(): bigint {
  const b = randomBytes(16);
  b[0] = (b[0]! & 0x7f) | 0x01; // positive, 16 significant bytes, never zero
  return BigInt(`0x${b.toString('hex')}`);
}

/** PEM armour for DER bytes. */
export function toPem(der: Buffer, label = 'CERTIFICATE'): string {
  const b64 = der.toString('base64').replace(/.{1,64}/g, '$&\n');
  return `-----BEGIN ${label}-----\n${b64}-----END ${label}-----\n`;
}

/** Build and sign a certificate from a full spec. */
export function createCertificate(spec: CertificateSpec): IssuedCertificate {
  const serial = spec.serialNumber !== undefined ? BigInt(spec.serialNumber) : randomSerial();
  if (serial <= 0n) throw new RangeError('serialNumber must be positive');
  const notBefore = spec.notBefore ?? new Date(Date.now() - 5 * 60_000);
  const notAfter = spec.notAfter ?? new Date(notBefore.getTime() + (spec.validityDays ?? 365) * 86_400_000);
  if (notAfter.getTime() <= notBefore.getTime()) throw new RangeError('notAfter must be after notBefore');
  const sig = signatureAlgorithm(spec.signingKey);
  const exts: Buffer[] = [];
  exts.push(extension('2.5.29.19', true, spec.isCa
    ? derSequence(derBoolean(true), ...(spec.pathLength !== undefined ? [derInteger(spec.pathLength)] : []))
    : derSequence()));
  const usage = spec.keyUsage ?? (spec.isCa ? ['keyCertSign', 'cRLSign', 'digitalSignature'] : ['digitalSignature']);
  if (usage.length > 0) exts.push(extension('2.5.29.15', true, keyUsageValue(usage)));
  if (spec.extendedKeyUsage && spec.extendedKeyUsage.length > 0) {
    exts.push(extension('2.5.29.37', false, derSequence(...spec.extendedKeyUsage.map((e) => derOid(EKU_OIDS[e])))));
  }
  if (spec.subjectAltNames && spec.subjectAltNames.length > 0) exts.push(extension('2.5.29.17', false, sanValue(spec.subjectAltNames)));
  if (spec.keyIdentifiers !== false) {
    exts.push(extension('2.5.29.14', false, derOctetString(keyIdentifier(spec.subjectKey))));
    exts.push(extension('2.5.29.35', false, derSequence(derTlv(0x80, keyIdentifier(spec.signingKey)))));
  }
  const tbs = derSequence(
    derExplicit(0, derInteger(2)), // v3
    derInteger(serial),
    sig.algId,
    encodeName(spec.issuer ?? spec.subject),
    derSequence(derTime(notBefore), derTime(notAfter)),
    encodeName(spec.subject),
    spki(spec.subjectKey),
    derExplicit(3, derSequence(...exts)),
  );
  const signature = sign(sig.hash, tbs, spec.signingKey);
  const der = derSequence(tbs, sig.algId, derBitString(signature));
  return { der, pem: toPem(der), x509: new X509Certificate(der), serialNumber: serial };
}

/** A certificate together with its key pair. */
export interface CertifiedKey {
  certificate: IssuedCertificate;
  key: GeneratedKeyPair;
  /** Certificate PEM. */
  certPem: string;
  /** PKCS#8 private key PEM. */
  keyPem: string;
  /** The subject, for issuing further certificates. */
  subject: DistinguishedName;
}

/** Options shared by the convenience constructors. */
export interface CertOptions {
  subject: DistinguishedName;
  /** Existing key pair; default a new one of `keyAlgorithm`. */
  key?: GeneratedKeyPair;
  keyAlgorithm?: KeyAlgorithm;
  rsaBits?: number;
  serialNumber?: bigint | number;
  notBefore?: Date;
  notAfter?: Date;
  validityDays?: number;
}

function certified(certificate: IssuedCertificate, key: GeneratedKeyPair, subject: DistinguishedName): CertifiedKey {
  return { certificate, key, certPem: certificate.pem, keyPem: key.privateKeyPem, subject };
}

/**
 * A self-signed certificate for Celery's `auth` serializer: RSA (default
 * 2048 bits, `rsaBits` for more), sha256WithRSAEncryption, keyUsage
 * digitalSignature + keyCertSign (so OpenSSL accepts it as its own trust
 * anchor), basicConstraints CA:false.
 */
export async function createSelfSignedCertificate(opts: CertOptions): Promise<CertifiedKey> {
  const key = opts.key ?? (await generateKeyPair(opts.keyAlgorithm ?? 'rsa', { rsaBits: opts.rsaBits ?? 2048 }));
  const cert = createCertificate({
    subject: opts.subject, subjectKey: key.publicKey, signingKey: key.privateKey,
    serialNumber: opts.serialNumber, notBefore: opts.notBefore, notAfter: opts.notAfter, validityDays: opts.validityDays,
    keyUsage: ['digitalSignature', 'nonRepudiation', 'keyCertSign'],
  });
  return certified(cert, key, opts.subject);
}

/** A CA certificate: basicConstraints CA:true (critical), keyUsage keyCertSign + cRLSign + digitalSignature. */
export async function createCaCertificate(opts: CertOptions & { pathLength?: number }): Promise<CertifiedKey> {
  const key = opts.key ?? (await generateKeyPair(opts.keyAlgorithm ?? 'ec-p256', { rsaBits: opts.rsaBits ?? 2048 }));
  const cert = createCertificate({
    subject: opts.subject, subjectKey: key.publicKey, signingKey: key.privateKey, isCa: true, pathLength: opts.pathLength,
    serialNumber: opts.serialNumber, notBefore: opts.notBefore, notAfter: opts.notAfter, validityDays: opts.validityDays ?? 3650,
  });
  return certified(cert, key, opts.subject);
}

/**
 * A leaf certificate signed by `ca`, for TLS servers and/or clients.
 * `hosts` go into subjectAltName (DNS names and IPs); `usage` picks the
 * extendedKeyUsage (default serverAuth + clientAuth). keyUsage follows the
 * key: digitalSignature, plus keyEncipherment for RSA.
 */
export async function createLeafCertificate(ca: CertifiedKey, opts: CertOptions & { hosts?: readonly string[]; usage?: readonly ExtendedKeyUsage[] }): Promise<CertifiedKey> {
  const key = opts.key ?? (await generateKeyPair(opts.keyAlgorithm ?? 'ec-p256', { rsaBits: opts.rsaBits ?? 2048 }));
  const cert = createCertificate({
    subject: opts.subject, issuer: ca.subject, subjectKey: key.publicKey, signingKey: ca.key.privateKey,
    serialNumber: opts.serialNumber, notBefore: opts.notBefore, notAfter: opts.notAfter, validityDays: opts.validityDays ?? 825,
    keyUsage: key.algorithm === 'rsa' ? ['digitalSignature', 'keyEncipherment'] : ['digitalSignature'],
    extendedKeyUsage: opts.usage ?? ['serverAuth', 'clientAuth'],
    subjectAltNames: opts.hosts ?? [],
  });
  return certified(cert, key, opts.subject);
}
