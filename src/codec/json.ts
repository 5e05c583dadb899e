/**
 * Hardened JSON decoding: size, depth and container-size limits are checked
 * by one linear scan of the bytes before `JSON.parse` runs, so a hostile
 * body costs O(n) and never recursion; prototype-bearing keys are refused.
 */
import { DecodeError } from '../errors.ts';
import { DEFAULT_DECODE_LIMITS, type DecodeLimits } from './limits.ts';

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const COMMA = 0x2c;

/**
 * Check size, nesting depth and items per container without parsing. Works
 * on bytes or on a string (JSON's structural characters are ASCII, so the
 * UTF-16 code units of a string scan the same way).
 */
export function scanJsonLimits(input: Uint8Array | string, limits: DecodeLimits): void {
  checkSize(input.length, limits);
  scanStructure(input, limits);
}

function checkSize(length: number, limits: DecodeLimits): void {
  if (length > limits.maxBytes) {
    throw new DecodeError(`body of ${length} bytes exceeds the ${limits.maxBytes}-byte limit`, { code: 'ERR_TOO_LARGE' });
  }
}

/** Depth and items per container (the size is checked by the caller). */
function scanStructure(input: Uint8Array | string, limits: DecodeLimits): void {
  // Fast path (most messages): a container of n items needs at least 2n-1
  // characters, and nesting cannot be deeper than the number of opening
  // brackets; both bounds are found with native searches.
  if (input.length < 2 * limits.maxItems && countOpeners(input, limits.maxDepth) <= limits.maxDepth) return;
  const isString = typeof input === 'string';
  const counts: number[] = [];
  let depth = 0;
  let inString = false;
  for (let i = 0; i < input.length; i++) {
    const c = isString ? input.charCodeAt(i) : input[i]!;
    if (inString) {
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) inString = false;
      continue;
    }
    if (c === QUOTE) inString = true;
    else if (c === OPEN_ARRAY || c === OPEN_OBJECT) {
      if (++depth > limits.maxDepth) {
        throw new DecodeError(`nesting deeper than ${limits.maxDepth} levels`, { code: 'ERR_TOO_DEEP' });
      }
      counts.push(0);
    } else if (c === CLOSE_ARRAY || c === CLOSE_OBJECT) {
      depth--;
      counts.pop();
    } else if (c === COMMA && depth > 0) {
      const n = ++counts[depth - 1]!;
      if (n >= limits.maxItems) {
        throw new DecodeError(`a container holds more than ${limits.maxItems} items`, { code: 'ERR_TOO_MANY_ITEMS' });
      }
    }
  }
}

/** Count `[` and `{` (inside strings too: an upper bound), stopping once past `limit`. */
function countOpeners(input: Uint8Array | string, limit: number): number {
  if (typeof input === 'string') return countChar(input, '[', 0, limit) + countChar(input, '{', 0, limit);
  return countByte(input, OPEN_ARRAY, limit) + countByte(input, OPEN_OBJECT, limit);
}

function countChar(input: string, ch: string, n: number, limit: number): number {
  for (let i = input.indexOf(ch); i >= 0 && n <= limit; i = input.indexOf(ch, i + 1)) n++;
  return n;
}

function countByte(input: Uint8Array, byte: number, limit: number): number {
  let n = 0;
  for (let i = 0; i < input.length && n <= limit; i++) if (input[i] === byte) n++;
  return n;
}

/**
 * Decode JSON bytes under `limits`. Throws `DecodeError` (never anything
 * else) for malformed text, oversized or over-deep input, and for objects
 * that carry `__proto__`, or `constructor`/`prototype` holding an object.
 */
export function decodeJson(bytes: Uint8Array, limits: DecodeLimits = DEFAULT_DECODE_LIMITS): unknown {
  checkSize(bytes.length, limits);
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // Scanned as text: JSON's structural characters are ASCII, and string searches stay in JavaScript.
  return parseChecked(buf.toString('utf8'), limits);
}

/** Decode a JSON string (for envelopes and records that arrive as text). */
export function decodeJsonText(text: string, limits: DecodeLimits = DEFAULT_DECODE_LIMITS): unknown {
  checkSize(text.length, limits);
  return parseChecked(text, limits);
}

function parseChecked(text: string, limits: DecodeLimits): unknown {
  scanStructure(text, limits);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new DecodeError(`invalid JSON: ${(err as Error).message}`, { code: 'ERR_INVALID_JSON' });
  }
  // Only text that spells one of the keys, or hides it behind a \u escape, can carry it: the walk is skipped for everything else.
  if (text.includes('\\u') || text.includes('"__proto__"') || text.includes('"constructor"') || text.includes('"prototype"')) assertNoPrototypeKeys(value);
  return value;
}

/**
 * Walk a decoded value and refuse prototype-bearing keys. Depth is already
 * bounded by the limits, so plain recursion is safe here.
 */
export function assertNoPrototypeKeys(value: unknown, path = '$'): void {
  if (value === null || typeof value !== 'object') return;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) assertNoPrototypeKeys(value[i], `${path}[${i}]`);
    return;
  }
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) return;
  for (const key of Object.keys(value)) {
    const v = (value as Record<string, unknown>)[key];
    if (key === '__proto__' || ((key === 'constructor' || key === 'prototype') && v !== null && typeof v === 'object')) {
      throw new DecodeError(`forbidden key ${JSON.stringify(key)} at ${path}`, { code: 'ERR_FORBIDDEN_KEY' });
    }
    assertNoPrototypeKeys(v, `${path}.${key}`);
  }
}

/** Encode a value as UTF-8 JSON bytes (non-ASCII kept raw: every JSON reader accepts it). */
export function encodeJson(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value), 'utf8');
}
