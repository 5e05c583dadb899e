/**
 * Results encrypted at rest (AES-256-GCM, key ring with key ids).
 *
 * The stored record stays a Celery-shaped JSON object so Python clients
 * see the true `status`, `task_id` and `date_done`, and for FAILURE,
 * REVOKED and RETRY an explanatory exception (`EncryptedResult`) instead of
 * a crash; the whole encoded meta (JSON or msgpack, whatever the caller
 * passes) travels in `celeriac_encrypted`:
 *
 * ```json
 * {"celeriac_encrypted": {"v": 1, "alg": "A256GCM", "kid": "…", "iv": "…", "ct": "…", "tag": "…"},
 *  "status": "SUCCESS", "result": null, "traceback": null, "children": [],
 *  "date_done": "…", "task_id": "…"}
 * ```
 *
 * Format v1:
 * - content key = HKDF-SHA256(ring key, salt = "", info = lp(label) lp(task id), 32 bytes):
 *   one key per task id, so the 2^32-messages-per-key limit of random GCM
 *   nonces is never approached however many results one ring key protects;
 * - 96-bit random IV, 128-bit tag;
 * - associated data = lp("celeriac/result-encryption") lp("1") lp("A256GCM")
 *   lp(kid) lp(task id) lp(status) lp(date_done or "\0null"): a record
 *   moved to another task id, or whose visible fields were edited, fails.
 *
 * Key ring text: `kid:aes-256-gcm:<base64 of 32 random bytes>`, one per
 * line, newest last (the newest encrypts, any decrypts); blank lines and `#`
 * comments ignored. Rotation: add a key, deploy, and keep old keys until
 * every record they protect has expired (`resultExpires`).
 */
import { createCipheriv, createDecipheriv, createHmac, createSecretKey, hkdfSync, randomBytes, randomFillSync, type KeyObject } from 'node:crypto';
import { inspect } from 'node:util';
import { DecodeError } from '../errors.ts';
import { decodeJson } from './json.ts';
import { DEFAULT_DECODE_LIMITS, type DecodeLimits } from './limits.ts';
import { KeyRingError } from './signing/errors.ts';
import { decodeBase64Strict, KID_PATTERN, lpString, nonRandomKeyReason, parseKeyRingText } from './signing/util.ts';

/** Field of the stored record that holds the ciphertext. */
export const ENCRYPTED_FIELD = 'celeriac_encrypted';

/** Exception record shown to Python clients for FAILURE, REVOKED and RETRY. */
export const ENCRYPTED_RESULT_EXCEPTION = Object.freeze({
  exc_type: 'EncryptedResult',
  exc_message: Object.freeze(['result encrypted by Celeriac; read it with a Celeriac client']),
  exc_module: 'celeriac',
});

/**
 * Why an encrypted result could not be read.
 * `not-encrypted`: the record has no `celeriac_encrypted` field.
 * `unknown-key`: its key id is not in the ring (retired too early, or another deployment's key).
 * `wrong-task-id`: the record names another task id than the one asked for.
 * `bad-tag`: authentication failed (tampered, moved, or a different key with the same id).
 * `malformed`: the record cannot be parsed.
 */
export type DecryptFailure = 'not-encrypted' | 'unknown-key' | 'wrong-task-id' | 'bad-tag' | 'malformed';

/** An encrypted result record could not be decrypted. Never carries key or plaintext material. */
export class DecryptError extends DecodeError {
  /** Short code of the failure. */
  declare readonly reason: DecryptFailure;
  constructor(reason: DecryptFailure, detail: string, options?: { hint?: string }) {
    super(reason, { code: 'ERR_DECRYPT', ...options });
    this.message = options?.hint ? `${detail} (${reason}) — ${options.hint}` : `${detail} (${reason})`;
  }
}

const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const VERSION = 1;
const ALG = 'A256GCM';
const AAD_LABEL = 'celeriac/result-encryption';
const HKDF_LABEL = 'celeriac/result-key/v1';
const RECORD_PREFIX = Buffer.from(`{"${ENCRYPTED_FIELD}":`);
const FIELD_MARKER = Buffer.from(`"${ENCRYPTED_FIELD}"`);
const RECORD_KEYS = new Set(['v', 'alg', 'kid', 'iv', 'ct', 'tag']);

/** One AES-256 key of a result ring. Prints without its material. */
export interface ResultKey {
  readonly kid: string;
  /** The 32-byte secret, as a secret KeyObject. */
  readonly key: KeyObject;
}

/** An immutable ring of AES-256-GCM keys, oldest first; the newest encrypts. */
export class ResultKeyRing {
  readonly #keys: readonly ResultKey[];
  readonly #byKid: ReadonlyMap<string, ResultKey>;

  /** Build from keys, oldest first. Throws `KeyRingError` for an empty ring, bad ids, wrong key sizes or duplicates. */
  constructor(keys: ReadonlyArray<{ kid: string; key: KeyObject | Buffer }>) {
    if (keys.length === 0) throw new KeyRingError('the result encryption key ring is empty', { hint: 'generate a key with `celeriac secrets` and add its line' });
    const byKid = new Map<string, ResultKey>();
    const list: ResultKey[] = [];
    for (const k of keys) {
      if (!KID_PATTERN.test(k.kid)) throw new KeyRingError(`key id ${JSON.stringify(String(k.kid).slice(0, 80))} is invalid`, { hint: 'use 1-64 characters of A-Z a-z 0-9 . _ -' });
      if (byKid.has(k.kid)) throw new KeyRingError(`key id ${JSON.stringify(k.kid)} appears twice in the ring`, { hint: 'give every key its own id' });
      const key = Buffer.isBuffer(k.key) ? createSecretKey(k.key) : k.key;
      if (key.type !== 'secret' || key.symmetricKeySize !== KEY_BYTES) {
        throw new KeyRingError(`key ${k.kid}: an AES-256-GCM key must be exactly ${KEY_BYTES} bytes`, { hint: 'generate a key with `celeriac secrets`' });
      }
      const entry = Object.freeze({ kid: k.kid, key, [inspect.custom]: () => `ResultKey { kid: ${JSON.stringify(k.kid)} }`, toJSON: () => ({ kid: k.kid }) });
      byKid.set(k.kid, entry);
      list.push(entry);
    }
    this.#keys = Object.freeze(list);
    this.#byKid = byKid;
    Object.freeze(this);
  }

  /** The newest key, used to encrypt. */
  current(): ResultKey {
    return this.#keys[this.#keys.length - 1]!;
  }

  /** The key with this id, if present. */
  get(kid: string): ResultKey | undefined {
    return this.#byKid.get(kid);
  }

  /** Key ids, oldest first. */
  kids(): string[] {
    return this.#keys.map((k) => k.kid);
  }

  /** Number of keys. */
  get size(): number {
    return this.#keys.length;
  }

  /** A new ring with `key` as the newest. */
  withKey(key: { kid: string; key: KeyObject | Buffer }): ResultKeyRing {
    return new ResultKeyRing([...this.#keys, key]);
  }

  /** A new ring without key `kid` (records it protects become unreadable). */
  without(kid: string): ResultKeyRing {
    return new ResultKeyRing(this.#keys.filter((k) => k.kid !== kid));
  }

  /** Safe JSON form: key ids only. */
  toJSON(): { kids: string[] } {
    return { kids: this.kids() };
  }

  /** `util.inspect` form without key material. */
  [inspect.custom](): string {
    return `ResultKeyRing { kids: ${JSON.stringify(this.kids())} }`;
  }
}

/**
 * Parse a result key ring from its text form (`kid:aes-256-gcm:<base64>`
 * lines, newest last). Throws `KeyRingError` naming the line, never the key.
 */
export function parseResultKeyRing(text: string, source = 'result encryption key ring'): ResultKeyRing {
  const lines = parseKeyRingText(text, source);
  const keys = lines.map((l) => {
    const where = `${source}, line ${l.line}`;
    try {
      if (l.type !== 'aes-256-gcm') {
        throw new KeyRingError(`${where}: key ${l.kid} has unknown type ${JSON.stringify(l.type.slice(0, 40))}`, { hint: 'result keys are written kid:aes-256-gcm:<base64 of 32 bytes>' });
      }
      if (l.material.length !== KEY_BYTES) {
        throw new KeyRingError(`${where}: key ${l.kid} is ${l.material.length} bytes; AES-256-GCM needs exactly ${KEY_BYTES}`, { hint: 'generate a key with `celeriac secrets`' });
      }
      const weak = nonRandomKeyReason(l.material);
      if (weak) throw new KeyRingError(`${where}: key ${l.kid} is not a random key: ${weak}`, { hint: 'generate a new key with `celeriac secrets generate aes-key`; never reuse an example or hand-written key' });
      return { kid: l.kid, key: createSecretKey(l.material) };
    } finally {
      l.material.fill(0);
    }
  });
  return new ResultKeyRing(keys);
}

/** Generate a new result key; returns the line to append to the ring (keep it secret). */
export function generateResultKey(kid: string): string {
  if (!KID_PATTERN.test(kid)) throw new KeyRingError(`key id ${JSON.stringify(kid.slice(0, 80))} is invalid`, { hint: 'use 1-64 characters of A-Z a-z 0-9 . _ -' });
  return `${kid}:aes-256-gcm:${randomBytes(KEY_BYTES).toString('base64')}`;
}

/** The visible fields of a result record. */
export interface EncryptedResultMeta {
  taskId: string;
  status: string;
  /** `date_done` as stored (ISO text) or null. */
  dateDone: string | null;
}

/**
 * HKDF's extract step depends only on the ring key: computed once per key.
 * Kept as raw bytes in this module-private map (never exported or logged):
 * an HMAC keyed with a Buffer costs 40 % less than one keyed with a KeyObject.
 */
const prkCache = new WeakMap<KeyObject, Buffer>();

/**
 * HKDF-SHA256(ring key, empty salt, info) for a 32-byte output, which is a
 * single expand block: HMAC(PRK, info || 0x01) with PRK = HMAC(zeros, IKM).
 * Byte-identical to `hkdfSync` (tested), at a third of the cost per result.
 */
export function contentKey(ringKey: KeyObject, taskId: string): Buffer {
  let prk = prkCache.get(ringKey);
  if (!prk) {
    prk = createHmac('sha256', Buffer.alloc(32)).update(ringKey.export()).digest();
    prkCache.set(ringKey, prk);
  }
  return createHmac('sha256', prk).update(HKDF_INFO_PREFIX).update(lpString(taskId)).update(ONE).digest();
}

const ONE = Buffer.from([1]);
const HKDF_INFO_PREFIX = lpString(HKDF_LABEL);

/** The same derivation through Node's `hkdfSync` (the definition `contentKey` must match). */
export function contentKeyReference(ringKey: KeyObject, taskId: string): Buffer {
  return Buffer.from(hkdfSync('sha256', ringKey, Buffer.alloc(0), Buffer.concat([lpString(HKDF_LABEL), lpString(taskId)]), KEY_BYTES));
}


/** The fixed start of the associated data, per key id (label, version, algorithm, kid). */
const aadPrefixes = new Map<string, Buffer>();

function associatedData(kid: string, meta: EncryptedResultMeta): Buffer {
  let prefix = aadPrefixes.get(kid);
  if (!prefix) {
    prefix = Buffer.concat([lpString(AAD_LABEL), lpString(String(VERSION)), lpString(ALG), lpString(kid)]);
    // Key ids are few (a ring's), but a reader may meet many forged ones: keep the cache bounded.
    if (aadPrefixes.size < 256) aadPrefixes.set(kid, prefix);
  }
  return Buffer.concat([
    prefix,
    lpString(meta.taskId),
    lpString(meta.status),
    // NUL never occurs in an ISO date, so null and every date string differ.
    lpString(meta.dateDone === null ? '\0null' : meta.dateDone),
  ]);
}

/**
 * Random IVs drawn from a pooled CSPRNG buffer: one `randomFillSync` per
 * 341 IVs instead of a `randomBytes` call (and its allocation) per result.
 * Each IV is handed out once; the pool is refilled before reuse.
 */
const ivPool = Buffer.alloc(IV_BYTES * 341);
let ivOffset = ivPool.length;

function nextIv(): Buffer {
  if (ivOffset + IV_BYTES > ivPool.length) {
    randomFillSync(ivPool);
    ivOffset = 0;
  }
  const iv = ivPool.subarray(ivOffset, ivOffset + IV_BYTES);
  ivOffset += IV_BYTES;
  return iv;
}

const EXCEPTION_STATES = new Set(['FAILURE', 'REVOKED', 'RETRY']);

/**
 * Encrypt an encoded result meta for storage with the ring's newest key.
 * `plainMeta` is the full encoded meta (JSON or msgpack bytes); `meta`
 * gives the fields kept visible. Returns the JSON bytes to store.
 */
export function encryptResult(plainMeta: Buffer, meta: EncryptedResultMeta, ring: ResultKeyRing): Buffer {
  if (typeof meta.taskId !== 'string' || meta.taskId.length === 0 || typeof meta.status !== 'string' || meta.status.length === 0) {
    throw new TypeError('encryptResult needs a non-empty taskId and status');
  }
  if (meta.dateDone !== null && typeof meta.dateDone !== 'string') throw new TypeError('encryptResult: dateDone must be a string or null');
  const { kid, key } = ring.current();
  // Encoded to base64 below before the pool is touched again (no await in between).
  const iv = nextIv();
  const cipher = createCipheriv('aes-256-gcm', contentKey(key, meta.taskId), iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(associatedData(kid, meta));
  const update = cipher.update(plainMeta);
  const rest = cipher.final(); // empty for GCM, a stream mode; kept in case that ever changes
  const ct = rest.length === 0 ? update : Buffer.concat([update, rest]);
  const tag = cipher.getAuthTag();
  return Buffer.from(encryptedRecordText(kid, iv.toString('base64'), ct.toString('base64'), tag.toString('base64'), meta), 'utf8');
}

/**
 * The stored record's JSON, written out directly: its shape is fixed and
 * only the strings vary (each one encoded by `JSON.stringify`), and this is
 * a sixth of the cost of building the object and stringifying it. The field
 * order is the contract `isEncryptedResult` relies on: `celeriac_encrypted`
 * first. A test holds it byte-equal to `JSON.stringify` of the object.
 */
export function encryptedRecordText(kid: string, iv: string, ct: string, tag: string, meta: EncryptedResultMeta): string {
  const result = EXCEPTION_STATES.has(meta.status) ? ENCRYPTED_RESULT_EXCEPTION_JSON : 'null';
  const date = meta.dateDone === null ? 'null' : JSON.stringify(meta.dateDone);
  // base64 text needs no escaping.
  return (
    `{"${ENCRYPTED_FIELD}":{"v":${VERSION},"alg":"${ALG}","kid":${JSON.stringify(kid)},"iv":"${iv}","ct":"${ct}","tag":"${tag}"},` +
    `"status":${JSON.stringify(meta.status)},"result":${result},"traceback":null,"children":[],"date_done":${date},"task_id":${JSON.stringify(meta.taskId)}}`
  );
}

const ENCRYPTED_RESULT_EXCEPTION_JSON = JSON.stringify(ENCRYPTED_RESULT_EXCEPTION);

/**
 * Cheap test whether a stored record is an encrypted one: our own records
 * start with `{"celeriac_encrypted":`; otherwise (a store that re-formats
 * JSON) the record is parsed only if it mentions the field at all.
 */
export function isEncryptedResult(payload: Buffer): boolean {
  if (!Buffer.isBuffer(payload)) return false;
  if (payload.subarray(0, RECORD_PREFIX.length).equals(RECORD_PREFIX)) return true;
  if (!payload.includes(FIELD_MARKER)) return false;
  try {
    const v = decodeJson(payload, recordLimits(DEFAULT_DECODE_LIMITS));
    return v !== null && typeof v === 'object' && !Array.isArray(v) && Object.hasOwn(v, ENCRYPTED_FIELD);
  } catch {
    return false;
  }
}

/** The record holds the meta as base64, so it may be 4/3 the size of the meta the limits allow. */
function recordLimits(limits: DecodeLimits): DecodeLimits {
  return { ...limits, maxBytes: Math.ceil((limits.maxBytes * 4) / 3) + 64 * 1024 };
}

function fail(reason: DecryptFailure, detail: string, hint?: string): never {
  throw new DecryptError(reason, detail, hint ? { hint } : undefined);
}

/**
 * Decrypt a stored record for `taskId` and return the encoded meta bytes
 * exactly as passed to `encryptResult`. `limits.maxBytes` bounds the meta
 * (the record may be a third larger, for base64); decode the returned bytes
 * with the same limits. Throws `DecryptError` (never
 * anything else) with reason `not-encrypted`, `malformed`,
 * `wrong-task-id`, `unknown-key` or `bad-tag`.
 */
export function decryptResult(payload: Buffer, taskId: string, ring: ResultKeyRing, limits: DecodeLimits = DEFAULT_DECODE_LIMITS): Buffer {
  if (!Buffer.isBuffer(payload)) fail('malformed', 'the stored result is not a byte buffer');
  let record: unknown;
  try {
    record = decodeJson(payload, recordLimits(limits));
  } catch (err) {
    fail('malformed', `the stored result of task ${JSON.stringify(String(taskId).slice(0, 80))} is not a JSON record: ${(err as DecodeError).reason ?? 'parse error'}`);
  }
  if (record === null || typeof record !== 'object' || Array.isArray(record)) fail('malformed', 'the stored result is not a JSON object');
  const r = record as Record<string, unknown>;
  if (!Object.hasOwn(r, ENCRYPTED_FIELD)) fail('not-encrypted', `the stored result of task ${JSON.stringify(String(taskId).slice(0, 80))} is not encrypted`, 'refuse it if results must be encrypted, or read it as a plain record');
  const e = r[ENCRYPTED_FIELD];
  if (e === null || typeof e !== 'object' || Array.isArray(e)) fail('malformed', `${ENCRYPTED_FIELD} is not an object`);
  const enc = e as Record<string, unknown>;
  for (const k of Object.keys(enc)) if (!RECORD_KEYS.has(k)) fail('malformed', `${ENCRYPTED_FIELD} has an unknown field`);
  if (enc.v !== VERSION || enc.alg !== ALG) fail('malformed', `${ENCRYPTED_FIELD} has an unsupported version or algorithm`, 'upgrade Celeriac on this side');
  if (typeof r.task_id !== 'string' || typeof r.status !== 'string' || (r.date_done !== null && typeof r.date_done !== 'string')) {
    fail('malformed', 'the stored result lacks task_id, status or date_done');
  }
  if (r.task_id !== taskId) {
    fail('wrong-task-id', `the stored record belongs to task ${JSON.stringify(r.task_id.slice(0, 80))}, not ${JSON.stringify(String(taskId).slice(0, 80))}`, 'the record was moved or the store was tampered with');
  }
  if (typeof enc.kid !== 'string' || !KID_PATTERN.test(enc.kid)) fail('malformed', `${ENCRYPTED_FIELD} has an invalid key id`);
  const iv = typeof enc.iv === 'string' ? decodeBase64Strict(enc.iv) : undefined;
  const tag = typeof enc.tag === 'string' ? decodeBase64Strict(enc.tag) : undefined;
  const ct = typeof enc.ct === 'string' ? (enc.ct === '' ? Buffer.alloc(0) : decodeBase64Strict(enc.ct)) : undefined;
  if (iv?.length !== IV_BYTES || tag?.length !== TAG_BYTES || ct === undefined) fail('malformed', `${ENCRYPTED_FIELD} has a bad iv, tag or ciphertext encoding`);
  const key = ring.get(enc.kid);
  if (!key) fail('unknown-key', `the result is encrypted with key ${JSON.stringify(enc.kid)}, which is not in the ring`, 'keep retired keys in the ring until the records they protect have expired');
  const meta: EncryptedResultMeta = { taskId, status: r.status, dateDone: r.date_done as string | null };
  try {
    const decipher = createDecipheriv('aes-256-gcm', contentKey(key.key, taskId), iv, { authTagLength: TAG_BYTES });
    decipher.setAAD(associatedData(enc.kid, meta));
    decipher.setAuthTag(tag);
    return Buffer.concat([decipher.update(ct), decipher.final()]);
  } catch {
    fail('bad-tag', `the encrypted result of task ${JSON.stringify(taskId.slice(0, 80))} failed authentication`, 'the record was altered, moved from another task, or written with a different key under the same id');
  }
}
