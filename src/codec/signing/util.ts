/**
 * Small byte helpers shared by the signing and encryption modules: strict
 * base64, length-prefixed framing and the key-ring text format.
 * Internal to Celeriac's codec layer.
 */
import { KeyRingError } from './errors.ts';

/**
 * Decode canonical, padded, standard-alphabet base64. Returns `undefined`
 * for anything else (whitespace, wrong padding, non-zero trailing bits), so
 * one byte string has exactly one accepted encoding.
 */
export function decodeBase64Strict(text: string): Buffer | undefined {
  if (text.length % 4 !== 0) return undefined;
  // Node's decoder skips what it does not know (whitespace, other alphabets, inner padding, non-zero
  // padding bits); re-encoding yields exactly the canonical form, so comparing refuses all of them in
  // two linear native passes (no per-character loop, no regular expression over megabytes).
  const bytes = Buffer.from(text, 'base64');
  return bytes.toString('base64') === text ? bytes : undefined;
}

/** Decode canonical unpadded base64url; `undefined` if not canonical. */
export function decodeBase64UrlStrict(text: string): Buffer | undefined {
  if (text.length % 4 === 1) return undefined;
  const bytes = Buffer.from(text, 'base64url');
  return bytes.toString('base64url') === text ? bytes : undefined;
}

/**
 * Decode bytes that must be ASCII canonical base64 (as `decodeBase64Strict`);
 * `undefined` for anything else, including empty input.
 */
export function decodeBase64BytesStrict(buf: Uint8Array): Buffer | undefined {
  if (buf.length === 0 || buf.length % 4 !== 0) return undefined;
  // A byte ≥ 0x80 becomes a character ≥ U+0080 in the latin1 view, which the alphabet scan refuses.
  return decodeBase64Strict(Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).toString('latin1'));
}


/** Decode UTF-8, returning `undefined` for invalid sequences (no silent U+FFFD). */
export function decodeUtf8Strict(bytes: Uint8Array): string | undefined {
  try {
    return UTF8_FATAL.decode(bytes);
  } catch {
    return undefined;
  }
}
const UTF8_FATAL = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** 4-byte big-endian length prefix followed by the bytes. */
export function lengthPrefixed(bytes: Uint8Array): Buffer {
  const len = Buffer.allocUnsafe(4);
  len.writeUInt32BE(bytes.length, 0);
  return Buffer.concat([len, bytes]);
}

/** Length-prefixed UTF-8 of a string. */
export function lpString(text: string): Buffer {
  return lengthPrefixed(Buffer.from(text, 'utf8'));
}

/** True when the string holds a lone UTF-16 surrogate (which UTF-8 cannot represent faithfully). */
export function hasLoneSurrogate(text: string): boolean {
  return /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(text);
}

/** Key ids: short, printable, safe in logs and in the `kid:type:material` text format. */
export const KID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** One parsed entry of a key-ring text. */
export interface KeyRingLine {
  kid: string;
  type: string;
  material: Buffer;
  /** 1-based line number, for error messages. */
  line: number;
}

/**
 * Parse the key-ring text format shared by signing and encryption rings:
 * entries `kid:type:<base64>`, one per line (or separated by commas or
 * whitespace, which is handy in an environment variable), oldest first,
 * newest last. Blank lines and `#` comments (whole-line or trailing) are ignored.
 * Errors name the line and key id, never the key material.
 */
export function parseKeyRingText(text: string, what: string): KeyRingLine[] {
  const out: KeyRingLine[] = [];
  const seen = new Set<string>();
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    // `#` never occurs in key ids or base64, so everything after it is a comment.
    const trimmed = lines[i]!.replace(/#.*$/, '').trim();
    if (trimmed === '') continue;
    for (const entry of trimmed.split(/[\s,;]+/)) {
      if (entry === '') continue;
      const parts = entry.split(':');
      const where = `${what}, line ${i + 1}`;
      if (parts.length !== 3) {
        throw new KeyRingError(`${where}: expected an entry of the form kid:type:base64`, {
          hint: 'write one key per line as kid:type:<base64>; generate lines with `celeriac secrets`',
        });
      }
      const [kid, type, b64] = parts as [string, string, string];
      if (!KID_PATTERN.test(kid)) {
        throw new KeyRingError(`${where}: key id must be 1-64 characters of A-Z a-z 0-9 . _ - (starting with a letter or digit)`, {
          hint: 'choose a key id such as 2025-06 or k1',
        });
      }
      if (seen.has(kid)) {
        throw new KeyRingError(`${where}: key id ${JSON.stringify(kid)} appears twice`, {
          hint: 'every key needs its own id; give the new key a new id',
        });
      }
      const material = decodeBase64Strict(b64);
      if (material === undefined || material.length === 0) {
        throw new KeyRingError(`${where}: key ${JSON.stringify(kid)} is not valid padded standard base64`, {
          hint: 'copy the line exactly as generated, without line breaks inside the key',
        });
      }
      seen.add(kid);
      out.push({ kid, type, material, line: i + 1 });
    }
  }
  return out;
}

/**
 * Why secret key bytes cannot be random (issue 20 #12), or `undefined`.
 * Catches the keys people write by hand or copy from examples: one
 * repeated byte (all zero), a short repeating pattern, a constant-step
 * sequence, printable text (a password or phrase, not key bytes), or too
 * few distinct byte values. For 32 random bytes each of these has a
 * probability below 10^-13, so a generated key is never refused.
 */
export function nonRandomKeyReason(key: Uint8Array): string | undefined {
  const n = key.length;
  if (n === 0) return 'it is empty';
  if (key.every((b) => b === key[0])) return `every byte is 0x${key[0]!.toString(16).padStart(2, '0')}`;
  for (let period = 2; period <= 8 && period < n; period++) {
    let repeats = true;
    for (let i = period; i < n && repeats; i++) repeats = key[i] === key[i - period];
    if (repeats) return `it repeats a pattern of ${period} bytes`;
  }
  const step = (key[1]! - key[0]! + 256) % 256;
  let sequence = true;
  for (let i = 2; i < n && sequence; i++) sequence = (key[i]! - key[i - 1]! + 256) % 256 === step;
  if (sequence) return 'its bytes are a counting sequence';
  if (n >= 16 && key.every((b) => b >= 0x20 && b <= 0x7e)) return 'every byte is printable text (a password or phrase encoded as base64, not random key bytes)';
  if (n >= 32 && new Set(key).size < 16) return 'it uses too few distinct byte values';
  return undefined;
}
