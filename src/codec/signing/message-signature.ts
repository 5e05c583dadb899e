/**
 * Celeriac's message signature header, `celeriac_signature`. Celery's
 * `auth` signature covers the body only: anyone who can write to the
 * broker can re-label a signed body (another task name, another eta, a
 * replayed id). This header signs a canonical byte string over the
 * content type and encoding, a hash of the body, the descriptive headers,
 * and an issue/expiry window with a random nonce (for replay detection by
 * the consumer).
 *
 * Canonical signed input (every field is a 4-byte big-endian length
 * followed by that many bytes, so no two inputs share an encoding):
 *
 * ```
 * lp("celeriac/message-signature/v2")
 * lp(alg) lp(kid) lp(decimal iat) lp(decimal exp) lp(nonce)
 * lp(content type) lp(content encoding) lp(SHA-256(body))
 * for each name of SIGNED_HEADERS, in that order:
 *   lp(name) lp(canonical value)
 * for each name of SIGNED_PROPERTIES, in that order:
 *   lp(name) lp(canonical value)
 * ```
 *
 * Version 2 (header `v: 2`, written since issue 20 #15) adds `argsrepr`,
 * `kwargsrepr` and `origin` (what monitoring shows) and the properties
 * `priority` (absent counts as 0, as every transport delivers it) and
 * `correlation_id` (absent or empty counts as absent: AMQP drops an empty
 * one). Version 1 (`v: 1`, label `…/v1`, {@link SIGNED_HEADERS_V1} only,
 * no properties) is still verified, for messages of earlier Celeriac
 * senders; a v2 signature cannot be passed off as v1, since the label and
 * field list are part of the signed bytes. Upgrade workers before senders:
 * an earlier worker refuses `v: 2`.
 *
 * Canonical values are typed and self-delimiting: `A` absent, `N` null,
 * `T`/`F` booleans, `n`+lp(number as JS prints it), `s`+lp(UTF-8),
 * `l`+u32 count+items, `o`+u32 count+(lp(key) value)… with keys sorted.
 * Absent and null are distinct; a header set to `undefined` counts as
 * absent (JSON drops it in transit).
 */
import { constants, createHash, randomBytes, sign as cryptoSign, verify as cryptoVerify, type KeyObject, type X509Certificate } from 'node:crypto';
import type { WireMessage } from '../../protocol/types.ts';
import { checkCeleryAuthSigner } from './celery-auth.ts';
import { certificateValidityProblem, type CertStore } from './cert-store.ts';
import { SignatureError, SigningError, type SignatureFailure } from './errors.ts';
import { celerySignerId } from './signer-id.ts';
import { decodeBase64Strict, decodeBase64UrlStrict, hasLoneSurrogate } from './util.ts';

/** Name of the header that carries the signature. */
export const SIGNATURE_HEADER = 'celeriac_signature';

/** Algorithms of the header signature. */
export type MessageSignatureAlg = 'ed25519' | 'hmac-sha256' | 'rsa-pss-sha256';

/** Every supported algorithm. */
export const MESSAGE_SIGNATURE_ALGS: readonly MessageSignatureAlg[] = Object.freeze(['ed25519', 'hmac-sha256', 'rsa-pss-sha256']);

/** Headers covered by a version 1 signature, in signing order (`compression` changes how the body is read). */
export const SIGNED_HEADERS_V1: readonly string[] = Object.freeze([
  'task',
  'id',
  'eta',
  'expires',
  'retries',
  'timelimit',
  'group',
  'group_index',
  'root_id',
  'parent_id',
  'shadow',
  'ignore_result',
  'compression',
]);

/** Headers covered by the current (version 2) signature, in signing order. */
export const SIGNED_HEADERS: readonly string[] = Object.freeze([...SIGNED_HEADERS_V1, 'argsrepr', 'kwargsrepr', 'origin']);

/** Message properties covered by the version 2 signature, in signing order. */
export const SIGNED_PROPERTIES: readonly string[] = Object.freeze(['priority', 'correlation_id']);

/** Version written by `signMessage`. */
export const MESSAGE_SIGNATURE_VERSION = 2;

/** Versions `verifyMessage` accepts. */
export type MessageSignatureVersion = 1 | 2;

/** The signed claims of a header signature. Times are ms since the epoch. */
export interface MessageSignatureClaims {
  alg: MessageSignatureAlg;
  /** Key id: a ring key id, or the Celery signer id for `rsa-pss-sha256`. */
  kid: string;
  /** Issued at. */
  iat: number;
  /** Expires at (exclusive). */
  exp: number;
  /** 128 random bits, base64url without padding: lets consumers detect replays. */
  nonce: string;
}

/** The header value as it travels. */
export interface MessageSignatureHeader extends MessageSignatureClaims {
  v: MessageSignatureVersion;
  /** Signature, standard base64. */
  sig: string;
}

/** Something that can sign the canonical input: a ring key, or an RSA key with its certificate. */
export interface MessageSigningKey {
  readonly alg: MessageSignatureAlg;
  readonly kid: string;
  /** Sign `data`; throws `SigningError` if this key cannot sign (verify-only). */
  sign(data: Buffer): Buffer;
}

/**
 * Verifies header signatures: a signing key ring, a certificate store
 * adapter (`certStoreVerifier`), or several combined (`combineVerifiers`).
 */
export interface MessageVerifier {
  /** True when a key for this algorithm and key id is held. */
  hasKey(alg: MessageSignatureAlg, kid: string): boolean;
  /**
   * True when `signature` is valid for `data`. Throws `SignatureError` when
   * the key is unknown or unusable at `now` (e.g. an expired certificate);
   * returns false for a signature that does not verify.
   */
  verify(alg: MessageSignatureAlg, kid: string, data: Buffer, signature: Buffer, now: number): boolean;
}

/** Options of `signMessage`. */
export interface SignMessageOptions {
  /** Lifetime of the signature, ms. Must cover queueing time, eta/countdown and retries' delays. */
  ttlMs: number;
  /** Issue time, ms since epoch (default now). */
  now?: number;
}

/** Options of `verifyMessage`. */
export interface VerifyMessageOptions {
  /** Verification time, ms since epoch (default now). */
  now?: number;
  /** Tolerated clock difference for `iat` and `exp`, ms (default 30 s). */
  clockSkewMs?: number;
}

/** Default tolerated clock difference between signer and verifier. */
export const DEFAULT_CLOCK_SKEW_MS = 30_000;

const LABELS: Record<MessageSignatureVersion, string> = { 1: 'celeriac/message-signature/v1', 2: 'celeriac/message-signature/v2' };
const KID_MAX = 512;
const SIG_B64_MAX = 2048; // RSA-8192 signatures are 1,368 base64 characters.
const VALUE_MAX_DEPTH = 8;
const VALUE_MAX_ITEMS = 1024;
const HEADER_KEYS = new Set(['v', 'alg', 'kid', 'iat', 'exp', 'nonce', 'sig']);

class ValueError extends Error {}

/** Append-only byte buffer: one allocation for the whole input instead of dozens of small ones. */
class Writer {
  #buf = Buffer.allocUnsafe(1024);
  #len = 0;

  #ensure(n: number): void {
    if (this.#len + n <= this.#buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.#buf.length * 2, this.#len + n));
    this.#buf.copy(next, 0, 0, this.#len);
    this.#buf = next;
  }

  tag(ch: number): void {
    this.#ensure(1);
    this.#buf[this.#len++] = ch;
  }

  u32(n: number): void {
    this.#ensure(4);
    this.#buf.writeUInt32BE(n, this.#len);
    this.#len += 4;
  }

  /** Length-prefixed bytes. */
  lpBytes(b: Uint8Array): void {
    this.u32(b.length);
    this.#ensure(b.length);
    this.#buf.set(b, this.#len);
    this.#len += b.length;
  }

  /** Length-prefixed UTF-8. */
  lpString(s: string): void {
    this.#ensure(4 + s.length * 3);
    const n = this.#buf.write(s, this.#len + 4, 'utf8');
    this.#buf.writeUInt32BE(n, this.#len);
    this.#len += 4 + n;
  }

  /** Reserve a length prefix; `close` fills it with the number of bytes written since. */
  open(): number {
    this.u32(0);
    return this.#len;
  }

  close(start: number): void {
    this.#buf.writeUInt32BE(this.#len - start, start - 4);
  }

  result(): Buffer {
    return Buffer.from(this.#buf.subarray(0, this.#len));
  }
}

const T_ABSENT = 0x41; // 'A'
const T_NULL = 0x4e; // 'N'
const T_TRUE = 0x54; // 'T'
const T_FALSE = 0x46; // 'F'
const T_NUMBER = 0x6e; // 'n'
const T_STRING = 0x73; // 's'
const T_LIST = 0x6c; // 'l'
const T_OBJECT = 0x6f; // 'o'

/** Typed, self-delimiting encoding of a header value (see the module comment). */
function encodeValue(value: unknown, w: Writer, depth: number): void {
  if (depth > VALUE_MAX_DEPTH) throw new ValueError('nested too deeply');
  if (value === undefined) w.tag(T_ABSENT);
  else if (value === null) w.tag(T_NULL);
  else if (value === true) w.tag(T_TRUE);
  else if (value === false) w.tag(T_FALSE);
  else if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new ValueError('a non-finite number');
    w.tag(T_NUMBER);
    w.lpString(String(value));
  } else if (typeof value === 'string') {
    if (hasLoneSurrogate(value)) throw new ValueError('a string with a lone surrogate');
    w.tag(T_STRING);
    w.lpString(value);
  } else if (Array.isArray(value)) {
    if (value.length > VALUE_MAX_ITEMS) throw new ValueError('too many items');
    w.tag(T_LIST);
    w.u32(value.length);
    for (let i = 0; i < value.length; i++) {
      // A hole or `undefined` becomes null in JSON: sign it as null.
      const item: unknown = value[i];
      encodeValue(item === undefined ? null : item, w, depth + 1);
    }
  } else if (typeof value === 'object' && !(value instanceof Uint8Array)) {
    const keys = Object.keys(value)
      .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
      .sort();
    if (keys.length > VALUE_MAX_ITEMS) throw new ValueError('too many keys');
    w.tag(T_OBJECT);
    w.u32(keys.length);
    for (const k of keys) {
      if (hasLoneSurrogate(k)) throw new ValueError('a key with a lone surrogate');
      w.lpString(k);
      encodeValue((value as Record<string, unknown>)[k], w, depth + 1);
    }
  } else throw new ValueError(`a value of type ${typeof value}`);
}

/** A property's signed value: priority absent → 0 (every transport delivers 0); correlation_id empty → absent (AMQP drops it). */
function propertyValue(properties: Record<string, unknown>, name: string): unknown {
  const v = Object.hasOwn(properties, name) ? properties[name] : undefined;
  if (name === 'priority') return v === undefined || v === null ? 0 : v;
  return v === '' || v === null ? undefined : v;
}

/**
 * The exact bytes a header signature covers, for the given message,
 * claims and signature version (default: the current one). Exported so other implementations can be checked against it.
 * Throws `SignatureError('malformed')` when a signed header holds a value
 * that has no canonical form (a function, a non-finite number, …) or the
 * content type or encoding is not a string.
 */
export function canonicalSigningInput(message: WireMessage, claims: MessageSignatureClaims, version: MessageSignatureVersion = MESSAGE_SIGNATURE_VERSION): Buffer {
  const headers: Record<string, unknown> =
    message.headers !== null && typeof message.headers === 'object' ? (message.headers as Record<string, unknown>) : {};
  const body = Buffer.isBuffer(message.body) ? message.body : Buffer.alloc(0);
  if (typeof message.contentType !== 'string' || typeof message.contentEncoding !== 'string') {
    throw new SignatureError('malformed', 'the message content type or encoding is not a string');
  }
  const w = new Writer();
  w.lpString(LABELS[version]);
  w.lpString(claims.alg);
  w.lpString(claims.kid);
  w.lpString(String(claims.iat));
  w.lpString(String(claims.exp));
  w.lpString(claims.nonce);
  w.lpString(message.contentType);
  w.lpString(message.contentEncoding);
  w.lpBytes(createHash('sha256').update(body).digest());
  for (const name of version === 1 ? SIGNED_HEADERS_V1 : SIGNED_HEADERS) {
    w.lpString(name);
    const start = w.open();
    try {
      encodeValue(Object.hasOwn(headers, name) ? headers[name] : undefined, w, 0);
    } catch (err) {
      // Anything odd (a throwing getter, a proxy) is malformed input, never a crash.
      const what = err instanceof ValueError ? err.message : 'a value that cannot be read';
      throw new SignatureError('malformed', `header ${JSON.stringify(name)} holds ${what}, which cannot be signed`);
    }
    w.close(start);
  }
  if (version === 1) return w.result();
  const properties: Record<string, unknown> =
    message.properties !== null && typeof message.properties === 'object' ? (message.properties as Record<string, unknown>) : {};
  for (const name of SIGNED_PROPERTIES) {
    w.lpString(name);
    const start = w.open();
    try {
      encodeValue(propertyValue(properties, name), w, 0);
    } catch (err) {
      const what = err instanceof ValueError ? err.message : 'a value that cannot be read';
      throw new SignatureError('malformed', `property ${JSON.stringify(name)} holds ${what}, which cannot be signed`);
    }
    w.close(start);
  }
  return w.result();
}

function isAlg(v: unknown): v is MessageSignatureAlg {
  return v === 'ed25519' || v === 'hmac-sha256' || v === 'rsa-pss-sha256';
}

/**
 * Sign a message: returns a copy whose headers carry `celeriac_signature`
 * (any previous one is replaced). The body is not copied. Throws
 * `SigningError` for a bad `ttlMs`/`now` or a header value with no
 * canonical form, and whatever `key.sign` throws (e.g. a verify-only key).
 */
export function signMessage(message: WireMessage, key: MessageSigningKey, opts: SignMessageOptions): WireMessage {
  const now = opts.now ?? Date.now();
  if (!Number.isSafeInteger(now) || now < 0) throw new SigningError('`now` must be a non-negative integer of ms since the epoch');
  if (!Number.isSafeInteger(opts.ttlMs) || opts.ttlMs <= 0) {
    throw new SigningError('`ttlMs` must be a positive integer number of milliseconds', { hint: 'use a lifetime that covers queueing, eta and retry delays, e.g. 3600000 for one hour' });
  }
  if (!isAlg(key.alg) || typeof key.kid !== 'string' || key.kid.length === 0 || key.kid.length > KID_MAX) {
    throw new SigningError('the signing key has an unsupported algorithm or an invalid key id');
  }
  const headers: Record<string, unknown> = { ...message.headers };
  delete headers[SIGNATURE_HEADER];
  const copy: WireMessage = { ...message, headers, properties: { ...message.properties } };
  const claims: MessageSignatureClaims = {
    alg: key.alg,
    kid: key.kid,
    iat: now,
    exp: now + opts.ttlMs,
    nonce: randomBytes(16).toString('base64url'),
  };
  let input: Buffer;
  try {
    input = canonicalSigningInput(copy, claims);
  } catch (err) {
    throw new SigningError((err as Error).message, { hint: 'signed headers must hold JSON values (strings, finite numbers, booleans, null, arrays, objects)' });
  }
  const value: MessageSignatureHeader = { v: MESSAGE_SIGNATURE_VERSION, ...claims, sig: key.sign(input).toString('base64') };
  headers[SIGNATURE_HEADER] = value;
  return copy;
}

function fail(reason: SignatureFailure, detail: string, hint?: string): never {
  throw new SignatureError(reason, detail, hint ? { hint } : undefined);
}

/** Validate the shape of a received header value. */
function parseHeader(raw: unknown): { claims: MessageSignatureClaims; sig: Buffer; version: MessageSignatureVersion } {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw) || Buffer.isBuffer(raw)) {
    fail('malformed', `the ${SIGNATURE_HEADER} header is not an object`);
  }
  const h = raw as Record<string, unknown>;
  for (const k of Object.keys(h)) if (!HEADER_KEYS.has(k)) fail('malformed', `the ${SIGNATURE_HEADER} header has an unknown field ${JSON.stringify(k.slice(0, 40))}`);
  if (h.v !== 1 && h.v !== 2) fail('malformed', `the ${SIGNATURE_HEADER} header has an unsupported version`, 'upgrade Celeriac on this side');
  if (!isAlg(h.alg)) fail('unsupported-algorithm', `the ${SIGNATURE_HEADER} header names an unsupported algorithm`);
  if (typeof h.kid !== 'string' || h.kid.length === 0 || h.kid.length > KID_MAX || hasLoneSurrogate(h.kid) || /[\x00-\x1f\x7f]/.test(h.kid)) {
    fail('malformed', `the ${SIGNATURE_HEADER} header has an invalid key id`);
  }
  if (!Number.isSafeInteger(h.iat) || !Number.isSafeInteger(h.exp) || (h.iat as number) < 0 || (h.exp as number) <= (h.iat as number)) {
    fail('malformed', `the ${SIGNATURE_HEADER} header has invalid iat/exp times`);
  }
  if (typeof h.nonce !== 'string' || h.nonce.length !== 22 || decodeBase64UrlStrict(h.nonce)?.length !== 16) {
    fail('malformed', `the ${SIGNATURE_HEADER} header has an invalid nonce`);
  }
  if (typeof h.sig !== 'string' || h.sig.length === 0 || h.sig.length > SIG_B64_MAX) fail('malformed', `the ${SIGNATURE_HEADER} header has an invalid signature field`);
  const sig = decodeBase64Strict(h.sig);
  if (!sig) fail('malformed', `the ${SIGNATURE_HEADER} signature is not base64`);
  return { claims: { alg: h.alg, kid: h.kid, iat: h.iat as number, exp: h.exp as number, nonce: h.nonce }, sig, version: h.v };
}

/**
 * Verify a message's `celeriac_signature` header and return its claims.
 * The signature is checked before the time window, so `expired` and
 * `not-yet-valid` always describe authentic headers. Replay detection
 * (remembering nonces until `exp`) is the caller's job.
 *
 * Throws `SignatureError` with reason `missing-signature`, `malformed`,
 * `unsupported-algorithm`, `unknown-key`, `bad-signature`, `expired`,
 * `not-yet-valid` (or a certificate reason from a certificate-store
 * verifier); never anything else.
 */
export function verifyMessage(message: WireMessage, verifier: MessageVerifier, opts: VerifyMessageOptions = {}): MessageSignatureClaims {
  const now = opts.now ?? Date.now();
  const skew = opts.clockSkewMs ?? DEFAULT_CLOCK_SKEW_MS;
  const headers = message !== null && typeof message === 'object' ? message.headers : undefined;
  const raw = headers !== null && typeof headers === 'object' && Object.hasOwn(headers, SIGNATURE_HEADER) ? headers[SIGNATURE_HEADER] : undefined;
  if (raw === undefined || raw === null) {
    fail('missing-signature', `the message has no ${SIGNATURE_HEADER} header`, 'the sender must sign its messages with a key this worker trusts');
  }
  const { claims, sig, version } = parseHeader(raw);
  if (!verifier.hasKey(claims.alg, claims.kid)) {
    fail('unknown-key', `no ${claims.alg} key with id ${JSON.stringify(claims.kid.slice(0, 120))} is trusted here`, 'add the key to the ring (or the certificate to the store), or re-sign with a current key');
  }
  const input = canonicalSigningInput(message, claims, version);
  let ok: boolean;
  try {
    ok = verifier.verify(claims.alg, claims.kid, input, sig, now);
  } catch (err) {
    if (err instanceof SignatureError) throw err;
    ok = false;
  }
  if (!ok) fail('bad-signature', `the ${SIGNATURE_HEADER} signature (key ${JSON.stringify(claims.kid.slice(0, 120))}) does not verify`, 'the message was altered or forged; it must be discarded');
  if (now + skew < claims.iat) fail('not-yet-valid', `the signature is issued at ${new Date(claims.iat).toISOString()}, in the future`, 'check the clocks of sender and worker');
  if (now - skew >= claims.exp) fail('expired', `the signature expired at ${new Date(claims.exp).toISOString()}`, 'the message waited longer than its signature lifetime; raise the ttl or re-send it');
  return claims;
}

/**
 * Combine verifiers: the first one that holds the key decides. For a
 * worker in `auth` mode that also accepts ring-signed Celeriac peers.
 */
export function combineVerifiers(...verifiers: readonly MessageVerifier[]): MessageVerifier {
  const list = [...verifiers];
  return {
    hasKey: (alg, kid) => list.some((v) => v.hasKey(alg, kid)),
    verify(alg, kid, data, signature, now) {
      const v = list.find((x) => x.hasKey(alg, kid));
      if (!v) fail('unknown-key', `no ${alg} key with id ${JSON.stringify(kid.slice(0, 120))} is trusted here`);
      return v.verify(alg, kid, data, signature, now);
    },
  };
}

// RSA-PSS for the header: SHA-256, MGF1-SHA-256, salt = hash length (RFC 8017's
// recommendation), checked exactly on verify since only Celeriac produces it.
const RSA_PSS_OPTIONS = { padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 } as const;

/**
 * A header-signing key from the RSA key and certificate used for Celery's
 * `auth` serializer: algorithm `rsa-pss-sha256`, key id = the Celery signer
 * id, so a worker verifies both signatures with one certificate store.
 * Throws `SigningError`/`CertificateError` if the key is not RSA ≥ 2048
 * bits, does not match the certificate, or the certificate is not valid now.
 */
export function rsaMessageSigningKey(key: KeyObject, cert: X509Certificate): MessageSigningKey {
  checkCeleryAuthSigner({ key, cert });
  const kid = celerySignerId(cert);
  return Object.freeze({
    alg: 'rsa-pss-sha256' as const,
    kid,
    sign: (data: Buffer): Buffer => cryptoSign('sha256', data, { key, ...RSA_PSS_OPTIONS }),
  });
}

/** Options of `certStoreVerifier`. */
export interface CertStoreVerifierOptions {
  /** When set, only these signer ids are accepted. */
  allowedSigners?: ReadonlySet<string>;
}

/**
 * A `MessageVerifier` over a Celery certificate store for `rsa-pss-sha256`
 * headers (key id = signer id). The certificate's validity is re-checked at
 * verification time; a signer outside `allowedSigners` is refused with
 * `signer-not-allowed`.
 */
export function certStoreVerifier(store: CertStore, opts: CertStoreVerifierOptions = {}): MessageVerifier {
  return {
    hasKey: (alg, kid) => alg === 'rsa-pss-sha256' && store.has(kid),
    verify(alg, kid, data, signature, now) {
      const entry = alg === 'rsa-pss-sha256' ? store.get(kid) : undefined;
      if (!entry) fail('unknown-key', `no certificate with signer id ${JSON.stringify(kid.slice(0, 120))} is in the store`);
      if (opts.allowedSigners && !opts.allowedSigners.has(kid)) {
        fail('signer-not-allowed', `signer ${JSON.stringify(kid.slice(0, 120))} is in the certificate store but not allowed here`);
      }
      const problem = certificateValidityProblem(entry, now);
      if (problem) fail(problem, `the certificate of signer ${JSON.stringify(kid.slice(0, 120))} is ${problem === 'expired-certificate' ? 'expired' : 'not yet valid'}`, 'renew the certificate or check the clocks');
      if (signature.length !== entry.modulusBytes) return false;
      try {
        return cryptoVerify('sha256', data, { key: entry.cert.publicKey, ...RSA_PSS_OPTIONS }, signature);
      } catch {
        return false;
      }
    },
  };
}
