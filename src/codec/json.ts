/**
 * Hardened JSON decoding: size, depth and container-size limits are checked
 * by one linear scan of the bytes before `JSON.parse` runs, so a hostile
 * body costs O(n) and never recursion; prototype-bearing keys are refused.
 *
 * Exact integers: an integer literal beyond ±2^53 decodes to a `bigint`
 * (or is refused when `limits.bigIntegers` is `'refuse'`), never to a
 * rounded double, and a `bigint` encodes back as the same JSON integer.
 * Node 20's `JSON.parse` gives a reviver no access to the source text, so
 * the exact path is taken only when the text holds a run of 16 digits (a
 * shorter integer is always exact); everything else is one `JSON.parse`.
 */
import { isUtf8 } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import { DecodeError } from '../errors.ts';
import { DEFAULT_DECODE_LIMITS, type DecodeLimits } from './limits.ts';

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const COMMA = 0x2c;
const MINUS = 0x2d;
const PLUS = 0x2b;
const DOT = 0x2e;
const DIGIT_0 = 0x30;
const DIGIT_9 = 0x39;
const LOWER_E = 0x65;
const UPPER_E = 0x45;

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
  // Python refuses bytes that are not UTF-8 (UnicodeDecodeError); toString would replace them silently.
  if (!isUtf8(buf)) throw new DecodeError('body is not valid UTF-8', { code: 'ERR_INVALID_JSON' });
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
    value = hasDigitRun16(text) ? parseExact(text, limits) : JSON.parse(text);
  } catch (err) {
    if (err instanceof DecodeError) throw err;
    throw new DecodeError(`invalid JSON: ${(err as Error).message}`, { code: 'ERR_INVALID_JSON' });
  }
  // Only text that spells one of the keys, or hides it behind a \u escape, can carry it: the walk is skipped for
  // everything else. Short unquoted needles: V8 finds them several times faster than the quoted keys, whose
  // first character is everywhere in JSON ('proto' covers __proto__ and prototype, 'ructor' constructor).
  if (text.includes('\\u') || text.includes('proto') || text.includes('ructor')) assertNoPrototypeKeys(value);
  return value;
}

/**
 * Whether the text holds 16 or more digits in a row: the shortest integer
 * literal that can be inexact as a double (2^53 has 16 digits). Any 16
 * consecutive positions include a multiple of 16, so only every 16th
 * character is probed, and a run is measured only around a digit found.
 */
function hasDigitRun16(t: string): boolean {
  const n = t.length;
  for (let i = 15; i < n; i += 16) {
    if (((t.charCodeAt(i) - DIGIT_0) >>> 0) > 9) continue;
    let a = i - 1;
    while (a >= 0 && ((t.charCodeAt(a) - DIGIT_0) >>> 0) <= 9) a--;
    let b = i + 1;
    while (b < n && ((t.charCodeAt(b) - DIGIT_0) >>> 0) <= 9) b++;
    if (b - a - 1 >= 16) return true;
    // A later run starts past b: probing on from b - 1 keeps the multiple-of-16 argument.
    i = b - 1;
  }
  return false;
}

/** 2^53: integers of larger magnitude are not all exact as doubles. */
const EXACT_LIMIT = 2n ** 53n;

/**
 * A per-process marker for big integers inside the rewritten text: a
 * control character JSON must escape, then random bytes no sender knows.
 */
const BIG_MARK = `\\u0001celeriac-bigint-${randomBytes(8).toString('hex')}:`;
const BIG_MARK_VALUE = JSON.parse(`"${BIG_MARK}"`) as string;

/**
 * The slow path for text that may hold big integers: find the integer
 * literals (outside strings) beyond ±2^53, refuse them or rewrite each as a
 * marked string, and turn those strings back into bigints while parsing.
 */
function parseExact(text: string, limits: DecodeLimits): unknown {
  const spans: Array<[number, number]> = [];
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) inString = false;
      continue;
    }
    if (c === QUOTE) {
      inString = true;
      continue;
    }
    if (c !== MINUS && (c < DIGIT_0 || c > DIGIT_9)) continue;
    let j = i + 1;
    let integer = true;
    for (; j < text.length; j++) {
      const d = text.charCodeAt(j);
      if (d >= DIGIT_0 && d <= DIGIT_9) continue;
      if (d === DOT || d === LOWER_E || d === UPPER_E || d === PLUS || d === MINUS) integer = false;
      else break;
    }
    const digits = j - i - (c === MINUS ? 1 : 0);
    if (integer && digits >= 16) {
      const token = text.slice(i, j);
      // A malformed literal (leading zeros, a lone minus) is left for JSON.parse to refuse.
      if (/^-?(0|[1-9][0-9]*)$/.test(token)) {
        const n = BigInt(token);
        if (n > EXACT_LIMIT || n < -EXACT_LIMIT) {
          if (limits.bigIntegers === 'refuse') {
            throw new DecodeError(`integer ${token.length > 40 ? `${token.slice(0, 40)}…` : token} is beyond ±2^53 and would lose precision`, {
              code: 'ERR_BIG_INTEGER',
              hint: "decodeLimits.bigIntegers is 'refuse'; set it to 'bigint' to receive such integers as bigint",
            });
          }
          spans.push([i, j]);
        }
      }
    }
    i = j - 1;
  }
  if (spans.length === 0) return JSON.parse(text);
  let rewritten = '';
  let at = 0;
  for (const [from, to] of spans) {
    rewritten += `${text.slice(at, from)}"${BIG_MARK}${text.slice(from, to)}"`;
    at = to;
  }
  rewritten += text.slice(at);
  return JSON.parse(rewritten, (_key, v: unknown) => (typeof v === 'string' && v.startsWith(BIG_MARK_VALUE) ? BigInt(v.slice(BIG_MARK_VALUE.length)) : v));
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
  return Buffer.from(stringifyJson(value), 'utf8');
}

/**
 * `JSON.stringify`, except that a `bigint` becomes the same JSON integer
 * (Python reads it back as an int). The exact path runs only when the
 * plain one refuses a bigint, so values without one cost nothing extra.
 */
export function stringifyJson(value: unknown): string {
  try {
    return JSON.stringify(value);
  } catch (err) {
    if (!(err instanceof TypeError) || !/BigInt/i.test(err.message)) throw err;
  }
  const marked = JSON.stringify(value, (_key, v: unknown) => (typeof v === 'bigint' ? `${BIG_MARK_VALUE}${v}` : v));
  return marked.split(`"${BIG_MARK}`).map((part, i) => (i === 0 ? part : part.replace(/^(-?[0-9]+)"/, '$1'))).join('');
}
