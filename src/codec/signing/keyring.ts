/**
 * Signing key rings for Celeriac-only deployments: Ed25519 key pairs and
 * HMAC-SHA256 shared secrets, each with a key id. The newest key signs;
 * any key in the ring verifies. Rotation: add a new key (last), move every
 * sender to it, then retire (delete) the old line once no message signed
 * with it can still be in flight.
 *
 * Text format (from an environment variable or a secret file), oldest
 * first, newest last; blank lines and `#` comments are ignored, and entries
 * may also be separated by commas or spaces:
 *
 * ```
 * # senders hold private keys (or HMAC secrets)
 * 2025-01:ed25519-private:<base64 PKCS#8 DER>
 * # workers that only verify hold public keys
 * 2025-01:ed25519-public:<base64 SPKI DER>
 * # or a shared secret of at least 32 random bytes
 * 2025-01:hmac-sha256:<base64 secret>
 * ```
 *
 * Key ids are 1–64 characters of `A-Z a-z 0-9 . _ -`. HMAC secrets shorter
 * than 32 bytes are refused. Nothing here ever prints key material.
 */
import {
  createHmac,
  createPrivateKey,
  createPublicKey,
  createSecretKey,
  generateKeyPairSync,
  randomBytes,
  sign as cryptoSign,
  timingSafeEqual,
  verify as cryptoVerify,
  type KeyObject,
} from 'node:crypto';
import { inspect } from 'node:util';
import { KeyRingError, SignatureError, SigningError } from './errors.ts';
import type { MessageSignatureAlg, MessageSigningKey, MessageVerifier } from './message-signature.ts';
import { KID_PATTERN, nonRandomKeyReason, parseKeyRingText } from './util.ts';

/** Kinds of ring keys. */
export type SigningKeyKind = 'ed25519' | 'hmac-sha256';

/** Entry types of the text format. */
export type SigningKeyEntryType = 'ed25519-private' | 'ed25519-public' | 'hmac-sha256';

/** Shortest accepted HMAC secret, bytes. */
export const MIN_HMAC_SECRET_BYTES = 32;
const MAX_HMAC_SECRET_BYTES = 1024;

/** One key of a ring. Prints as `SigningKey { kid, alg, canSign }`, never with its material. */
export class SigningKey implements MessageSigningKey {
  readonly kid: string;
  readonly alg: SigningKeyKind;
  /** False for an Ed25519 public key (verify only). */
  readonly canSign: boolean;
  readonly #signKey: KeyObject | undefined;
  readonly #verifyKey: KeyObject;

  /**
   * Prefer `parseSigningKeyRing`/`signingKeyFromKeyObject`. `signKey` is the
   * Ed25519 private key or HMAC secret (absent for verify-only Ed25519);
   * `verifyKey` is the Ed25519 public key or the same HMAC secret.
   */
  constructor(kid: string, alg: SigningKeyKind, verifyKey: KeyObject, signKey?: KeyObject) {
    if (!KID_PATTERN.test(kid)) {
      throw new KeyRingError(`key id ${JSON.stringify(kid.slice(0, 80))} is invalid`, { hint: 'use 1-64 characters of A-Z a-z 0-9 . _ - (e.g. 2025-06)' });
    }
    if (alg === 'ed25519') {
      if (verifyKey.type !== 'public' || verifyKey.asymmetricKeyType !== 'ed25519') throw new KeyRingError(`key ${kid}: expected an Ed25519 public key`);
      if (signKey && (signKey.type !== 'private' || signKey.asymmetricKeyType !== 'ed25519')) throw new KeyRingError(`key ${kid}: expected an Ed25519 private key`);
    } else if (alg === 'hmac-sha256') {
      if (verifyKey.type !== 'secret') throw new KeyRingError(`key ${kid}: expected an HMAC secret`);
      const size = verifyKey.symmetricKeySize ?? 0;
      if (size < MIN_HMAC_SECRET_BYTES) {
        throw new KeyRingError(`key ${kid}: the HMAC secret is ${size} bytes, shorter than the ${MIN_HMAC_SECRET_BYTES}-byte minimum`, {
          hint: 'generate a new secret with `celeriac secrets` (32 random bytes, base64)',
        });
      }
      if (size > MAX_HMAC_SECRET_BYTES) throw new KeyRingError(`key ${kid}: the HMAC secret is longer than ${MAX_HMAC_SECRET_BYTES} bytes`);
      signKey = verifyKey;
    } else {
      throw new KeyRingError(`key ${kid}: unsupported kind ${JSON.stringify(alg)}`, { hint: 'use ed25519 or hmac-sha256' });
    }
    this.kid = kid;
    this.alg = alg;
    this.#verifyKey = verifyKey;
    this.#signKey = signKey;
    this.canSign = signKey !== undefined;
    Object.freeze(this);
  }

  /** Sign `data`. Throws `SigningError` for a verify-only key. */
  sign(data: Buffer): Buffer {
    if (!this.#signKey) {
      throw new SigningError(`key ${this.kid} is a public key and can only verify`, { hint: 'senders need the ed25519-private line of this key' });
    }
    if (this.alg === 'hmac-sha256') return createHmac('sha256', this.#signKey).update(data).digest();
    return cryptoSign(null, data, this.#signKey);
  }

  /** Constant-time check (for HMAC) of a signature over `data`. */
  verify(data: Buffer, signature: Buffer): boolean {
    if (this.alg === 'hmac-sha256') {
      const expected = createHmac('sha256', this.#verifyKey).update(data).digest();
      // The length is public (32 bytes); only the content comparison must be constant-time.
      return signature.length === expected.length && timingSafeEqual(signature, expected);
    }
    if (signature.length !== 64) return false;
    try {
      return cryptoVerify(null, data, this.#verifyKey, signature);
    } catch {
      return false;
    }
  }

  /** The verify-only form (Ed25519 public key); HMAC keys are returned as they are, since verifying needs the secret. */
  toVerifyOnly(): SigningKey {
    return this.alg === 'ed25519' ? new SigningKey(this.kid, 'ed25519', this.#verifyKey) : this;
  }

  /** The text line of the verify-only form: `kid:ed25519-public:<spki>`, or the HMAC line (which is secret). */
  verifyingLine(): string {
    if (this.alg === 'hmac-sha256') return `${this.kid}:hmac-sha256:${this.#verifyKey.export().toString('base64')}`;
    return `${this.kid}:ed25519-public:${this.#verifyKey.export({ format: 'der', type: 'spki' }).toString('base64')}`;
  }

  /** Safe JSON form: no key material. */
  toJSON(): { kid: string; alg: SigningKeyKind; canSign: boolean } {
    return { kid: this.kid, alg: this.alg, canSign: this.canSign };
  }

  /** `util.inspect` form without key material. */
  [inspect.custom](): string {
    return `SigningKey { kid: ${JSON.stringify(this.kid)}, alg: '${this.alg}', canSign: ${this.canSign} }`;
  }
}

/**
 * An immutable ring of signing keys, oldest first. Implements
 * `MessageVerifier`, so it verifies `celeriac_signature` headers directly.
 */
export class SigningKeyRing implements MessageVerifier {
  readonly #keys: readonly SigningKey[];
  readonly #byKid: ReadonlyMap<string, SigningKey>;

  /** Build from keys, oldest first, newest last. Throws `KeyRingError` for an empty ring or duplicate key ids. */
  constructor(keys: readonly SigningKey[]) {
    if (keys.length === 0) throw new KeyRingError('the signing key ring is empty', { hint: 'generate a key with `celeriac secrets` and add its line' });
    const byKid = new Map<string, SigningKey>();
    for (const k of keys) {
      if (!(k instanceof SigningKey)) throw new KeyRingError('a signing key ring holds SigningKey objects only');
      if (byKid.has(k.kid)) throw new KeyRingError(`key id ${JSON.stringify(k.kid)} appears twice in the ring`, { hint: 'give every key its own id' });
      byKid.set(k.kid, k);
    }
    this.#keys = Object.freeze([...keys]);
    this.#byKid = byKid;
    Object.freeze(this);
  }

  /**
   * The newest key, used to sign. Throws `SigningError` when it cannot sign
   * (a verify-only ring, or a ring whose newest entry is a public key).
   */
  current(): SigningKey {
    const k = this.#keys[this.#keys.length - 1]!;
    if (!k.canSign) {
      throw new SigningError(`the newest key of the ring (${k.kid}) is a public key: this ring can only verify`, {
        hint: 'senders need the private line (ed25519-private or hmac-sha256) of the newest key',
      });
    }
    return k;
  }

  /** True when the newest key can sign. */
  get canSign(): boolean {
    return this.#keys[this.#keys.length - 1]!.canSign;
  }

  /** The key with this id, if present. */
  get(kid: string): SigningKey | undefined {
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

  /** The keys, oldest first. */
  keys(): readonly SigningKey[] {
    return this.#keys;
  }

  /** A new ring with `key` added as the newest (rotation step 1). */
  withKey(key: SigningKey): SigningKeyRing {
    return new SigningKeyRing([...this.#keys, key]);
  }

  /** A new ring without the key `kid` (rotation's last step: retire it). */
  without(kid: string): SigningKeyRing {
    return new SigningKeyRing(this.#keys.filter((k) => k.kid !== kid));
  }

  /** The same ring with Ed25519 private keys replaced by their public keys (HMAC keys stay: verifying needs the secret). */
  toVerifyOnly(): SigningKeyRing {
    return new SigningKeyRing(this.#keys.map((k) => k.toVerifyOnly()));
  }

  /** Text lines of the verify-only ring, for workers. Contains HMAC secrets if the ring holds any. */
  verifyingText(): string {
    return `${this.#keys.map((k) => k.verifyingLine()).join('\n')}\n`;
  }

  /** `MessageVerifier`: a key with this id and algorithm is in the ring. */
  hasKey(alg: MessageSignatureAlg, kid: string): boolean {
    return this.#byKid.get(kid)?.alg === alg;
  }

  /** `MessageVerifier`: verify with the key `kid`; throws `SignatureError('unknown-key')` if absent. */
  verify(alg: MessageSignatureAlg, kid: string, data: Buffer, signature: Buffer): boolean {
    const key = this.#byKid.get(kid);
    // The algorithm must match the key's own: an HMAC secret is never used as if it were a public key.
    if (!key || key.alg !== alg) throw new SignatureError('unknown-key', `no ${alg} key with id ${JSON.stringify(kid.slice(0, 120))} in the ring`);
    return key.verify(data, signature);
  }

  /** Safe JSON form: key ids only. */
  toJSON(): { kids: string[]; canSign: boolean } {
    return { kids: this.kids(), canSign: this.canSign };
  }

  /** `util.inspect` form without key material. */
  [inspect.custom](): string {
    return `SigningKeyRing { kids: ${JSON.stringify(this.kids())}, canSign: ${this.canSign} }`;
  }
}

function keyFromLine(kid: string, type: string, material: Buffer, where: string): SigningKey {
  try {
    switch (type) {
      case 'ed25519-private': {
        const priv = createPrivateKey({ key: material, format: 'der', type: 'pkcs8' });
        if (priv.asymmetricKeyType !== 'ed25519') throw new KeyRingError(`${where}: key ${kid} is not an Ed25519 private key`);
        return new SigningKey(kid, 'ed25519', createPublicKey(priv), priv);
      }
      case 'ed25519-public': {
        const pub = createPublicKey({ key: material, format: 'der', type: 'spki' });
        if (pub.asymmetricKeyType !== 'ed25519') throw new KeyRingError(`${where}: key ${kid} is not an Ed25519 public key`);
        return new SigningKey(kid, 'ed25519', pub);
      }
      case 'hmac-sha256': {
        // Short secrets are refused by the SigningKey constructor, with their length.
        const weak = material.length >= MIN_HMAC_SECRET_BYTES ? nonRandomKeyReason(material) : undefined;
        if (weak) throw new KeyRingError(`${where}: key ${kid} is not a random secret: ${weak}`, { hint: 'generate a new key with `celeriac secrets generate hmac` (32 random bytes); never reuse an example or hand-written key' });
        return new SigningKey(kid, 'hmac-sha256', createSecretKey(material));
      }
      default:
        throw new KeyRingError(`${where}: key ${kid} has unknown type ${JSON.stringify(type.slice(0, 40))}`, {
          hint: 'use ed25519-private, ed25519-public or hmac-sha256',
        });
    }
  } catch (err) {
    if (err instanceof KeyRingError) throw new KeyRingError(err.message.startsWith(where) ? err.message : `${where}: ${err.message}`, err.hint ? { hint: err.hint } : undefined);
    // OpenSSL's message describes the DER problem, not the key bytes.
    throw new KeyRingError(`${where}: key ${kid} does not decode as ${type}`, { hint: 'copy the line exactly as `celeriac secrets` generated it' });
  } finally {
    material.fill(0);
  }
}

/**
 * Parse the text format described in this module into a ring. Throws
 * `KeyRingError` (naming the line and key id, never the material) for
 * syntax errors, duplicate ids, undecodable keys and short HMAC secrets.
 */
export function parseSigningKeyRing(text: string, source = 'signing key ring'): SigningKeyRing {
  const lines = parseKeyRingText(text, source);
  return new SigningKeyRing(lines.map((l) => keyFromLine(l.kid, l.type, l.material, `${source}, line ${l.line}`)));
}

/** What `generateSigningKey` returns: the lines to store. */
export interface GeneratedSigningKey {
  kid: string;
  kind: SigningKeyKind;
  /** Line for senders (private key or secret). Keep it secret. */
  signingLine: string;
  /** Line for verifiers: the public key for Ed25519 (not secret); the same secret for HMAC. */
  verifyingLine: string;
}

/**
 * Generate a new key. Append `signingLine` to the senders' ring and
 * `verifyingLine` to the verifiers' ring (newest last).
 */
export function generateSigningKey(kind: SigningKeyKind, kid: string): GeneratedSigningKey {
  if (!KID_PATTERN.test(kid)) throw new KeyRingError(`key id ${JSON.stringify(kid.slice(0, 80))} is invalid`, { hint: 'use 1-64 characters of A-Z a-z 0-9 . _ -' });
  if (kind === 'ed25519') {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    return {
      kid,
      kind,
      signingLine: `${kid}:ed25519-private:${privateKey.export({ format: 'der', type: 'pkcs8' }).toString('base64')}`,
      verifyingLine: `${kid}:ed25519-public:${publicKey.export({ format: 'der', type: 'spki' }).toString('base64')}`,
    };
  }
  if (kind === 'hmac-sha256') {
    const line = `${kid}:hmac-sha256:${randomBytes(32).toString('base64')}`;
    return { kid, kind, signingLine: line, verifyingLine: line };
  }
  throw new KeyRingError(`unknown signing key kind ${JSON.stringify(String(kind).slice(0, 40))}`, { hint: 'use ed25519 or hmac-sha256' });
}
