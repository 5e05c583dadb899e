/**
 * MessagePack as Python's `msgpack` writes it (`use_bin_type=True`):
 * str → str type, bytes → bin type, maps decoded to plain objects.
 *
 * Data only: a decoded value is exactly the JSON data model (null, bool,
 * number, string, array, object with string keys) plus exact integers
 * (beyond ±2^53 a `bigint`, or refused when `limits.bigIntegers` is
 * `'refuse'`). Everything else — extension types (timestamps/Date,
 * msgpackr's BigInt, typed arrays, records, `undefined`, …), bin (bytes),
 * map keys that are not strings or integers, a `__proto__` key — is
 * refused by the structure scan before anything is decoded, so none of it
 * reaches task code. Python's kombu never writes an extension type.
 */
import { Packr } from 'msgpackr';
import { DecodeError, ValidationError } from '../errors.ts';
import { assertNoPrototypeKeys } from './json.ts';
import { DEFAULT_DECODE_LIMITS, type DecodeLimits } from './limits.ts';

// Records off so the bytes stay plain MessagePack; 64-bit integers as numbers when exact, bigint beyond ±2^53.
const packr = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: 'auto' as 'bigint', variableMapSize: true, largeBigIntToFloat: false });

const INT64_MIN = -(2n ** 63n);
const UINT64_MAX = 2n ** 64n - 1n;

/**
 * Encode a value as MessagePack bytes. A `bigint` goes out as a 64-bit
 * integer; one beyond 64 bits has no MessagePack form Python reads and is
 * refused (never turned into a float).
 */
export function encodeMsgpack(value: unknown): Buffer {
  try {
    return packr.pack(value);
  } catch (err) {
    if (err instanceof RangeError && /bigint|BigInt/.test(err.message)) {
      throw new ValidationError(`a bigint beyond ${INT64_MIN}..${UINT64_MAX} cannot be encoded as msgpack`, {
        hint: 'use the json serializer for integers wider than 64 bits',
        cause: err,
      });
    }
    throw err;
  }
}

/** Decode MessagePack bytes under `limits`; throws only `DecodeError`. */
export function decodeMsgpack(bytes: Uint8Array, limits: DecodeLimits = DEFAULT_DECODE_LIMITS): unknown {
  if (bytes.length > limits.maxBytes) {
    throw new DecodeError(`body of ${bytes.length} bytes exceeds the ${limits.maxBytes}-byte limit`, { code: 'ERR_TOO_LARGE' });
  }
  scanMsgpackLimits(bytes, limits);
  let value: unknown;
  try {
    value = packr.unpack(bytes);
  } catch (err) {
    throw new DecodeError(`invalid msgpack: ${(err as Error).message}`, { code: 'ERR_INVALID_MSGPACK' });
  }
  assertNoPrototypeKeys(value);
  return value;
}

/** Extension types seen in the wild, named in the refusal (msgpackr's own and the standard timestamp). */
const EXT_NAMES: ReadonlyMap<number, string> = new Map([
  [-1, 'timestamp'],
  [0, "undefined, as msgpackr writes it"],
  [0x42, 'BigInt'],
  [0x65, 'Error'],
  [0x72, 'record'],
  [0x73, 'Set'],
  [0x74, 'typed array'],
  [0x78, 'RegExp'],
]);

/** `__proto__` as a fixstr (msgpackr would rename it to `__proto_`, hiding it from the key check). */
const PROTO_KEY = Buffer.from('a95f5f70726f746f5f5f', 'hex');

/**
 * Walk the MessagePack structure iteratively (no recursion, no allocation of
 * values) before decoding: enforce depth and container-size limits, reject
 * truncated input early, and refuse everything outside the data model
 * (see the module comment).
 */
export function scanMsgpackLimits(b: Uint8Array, limits: DecodeLimits): void {
  // remaining[i] = items still expected in the container at depth i+1 (a map counts keys and values)
  const remaining: number[] = [];
  // isMap[i]: the container at depth i+1 is a map, so its even-numbered items are keys
  const isMap: boolean[] = [];
  let pos = 0;
  let rootDone = false;
  const refuseBig = limits.bigIntegers === 'refuse';
  const fail = (why: string, code = 'ERR_INVALID_MSGPACK'): never => {
    throw new DecodeError(why, { code });
  };
  const notData = (what: string): never => fail(`msgpack ${what} is not part of the JSON data model`, 'ERR_MSGPACK_TYPE');
  const need = (n: number): void => {
    if (pos + n > b.length) fail('invalid msgpack: truncated input');
  };
  const u16 = (): number => {
    need(2);
    const v = (b[pos]! << 8) | b[pos + 1]!;
    pos += 2;
    return v;
  };
  const u32 = (): number => {
    need(4);
    const v = b[pos]! * 0x1000000 + ((b[pos + 1]! << 16) | (b[pos + 2]! << 8) | b[pos + 3]!);
    pos += 4;
    return v;
  };
  const skip = (n: number): void => {
    need(n);
    pos += n;
  };
  const open = (items: number, map: boolean): void => {
    if (items > limits.maxItems) fail(`a container holds more than ${limits.maxItems} items`, 'ERR_TOO_MANY_ITEMS');
    if (items === 0) return;
    if (remaining.length + 1 > limits.maxDepth) fail(`nesting deeper than ${limits.maxDepth} levels`, 'ERR_TOO_DEEP');
    remaining.push(map ? items * 2 : items);
    isMap.push(map);
  };
  /** Beyond ±2^53 with bigIntegers 'refuse': refused (8 bytes at pos, big-endian). */
  const checkInt64 = (signed: boolean): void => {
    need(8);
    if (!refuseBig) return;
    const view = new DataView(b.buffer, b.byteOffset + pos, 8);
    const v = signed ? view.getBigInt64(0) : view.getBigUint64(0);
    if (v > 2n ** 53n || v < -(2n ** 53n)) {
      fail(`integer ${v} is beyond ±2^53 and would lose precision`, 'ERR_BIG_INTEGER');
    }
  };
  while (!rootDone || remaining.length > 0) {
    if (rootDone && remaining.length === 0) break;
    need(1);
    const start = pos;
    const t = b[pos++]!;
    // A map key: keys must be strings or integers (Python's int keys; msgpackr makes them strings, as json does).
    const top = remaining.length - 1;
    if (top >= 0 && isMap[top] && remaining[top]! % 2 === 0) {
      const strKey = (t >= 0xa0 && t <= 0xbf) || t === 0xd9 || t === 0xda || t === 0xdb;
      const intKey = t <= 0x7f || t >= 0xe0 || (t >= 0xcc && t <= 0xd3);
      if (!strKey && !intKey) notData(`map key of type 0x${t.toString(16)}`);
      if (t === 0xa9 && b.length - start >= PROTO_KEY.length && PROTO_KEY.equals(b.subarray(start, start + PROTO_KEY.length))) {
        fail('forbidden key "__proto__" in msgpack map', 'ERR_FORBIDDEN_KEY');
      }
    }
    let containerOpened = false;
    if (t <= 0x7f || t >= 0xe0 || t === 0xc0 || t === 0xc2 || t === 0xc3) {
      // fixint, nil, bool
    } else if (t >= 0x80 && t <= 0x8f) {
      open(t & 0x0f, true);
      containerOpened = (t & 0x0f) > 0;
    } else if (t >= 0x90 && t <= 0x9f) {
      open(t & 0x0f, false);
      containerOpened = (t & 0x0f) > 0;
    } else if (t >= 0xa0 && t <= 0xbf) {
      skip(t & 0x1f);
    } else {
      switch (t) {
        case 0xc4: case 0xc5: case 0xc6: notData('bin (bytes)'); break;
        case 0xc7: case 0xc8: case 0xc9:
        case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8: {
          // Extension types: timestamps (Date), msgpackr's BigInt, typed arrays, records, undefined, …
          const typeAt = pos + (t === 0xc7 ? 1 : t === 0xc8 ? 2 : t === 0xc9 ? 4 : 0);
          need(typeAt - pos + 1);
          const extType = b[typeAt]! > 127 ? b[typeAt]! - 256 : b[typeAt]!;
          const known = EXT_NAMES.get(extType);
          notData(`extension type ${extType}${known ? ` (${known})` : ''}`);
          break;
        }
        case 0xca: skip(4); break;
        case 0xcb: skip(8); break;
        case 0xcc: case 0xd0: skip(1); break;
        case 0xcd: case 0xd1: skip(2); break;
        case 0xce: case 0xd2: skip(4); break;
        case 0xcf: checkInt64(false); skip(8); break;
        case 0xd3: checkInt64(true); skip(8); break;
        case 0xd9: need(1); skip(b[pos++]!); break;
        case 0xda: skip(u16()); break;
        case 0xdb: skip(u32()); break;
        case 0xdc: { const n = u16(); open(n, false); containerOpened = n > 0; break; }
        case 0xdd: { const n = u32(); open(n, false); containerOpened = n > 0; break; }
        case 0xde: { const n = u16(); open(n, true); containerOpened = n > 0; break; }
        case 0xdf: { const n = u32(); open(n, true); containerOpened = n > 0; break; }
        default: fail(`invalid msgpack: unknown type byte 0x${t.toString(16)}`);
      }
    }
    if (containerOpened) continue;
    // one value finished: count it against its parents
    if (remaining.length === 0) {
      rootDone = true;
    } else {
      while (remaining.length > 0) {
        const last = remaining.length - 1;
        remaining[last] = remaining[last]! - 1;
        if (remaining[last]! > 0) break;
        remaining.pop();
        isMap.pop();
      }
      if (remaining.length === 0) rootDone = true;
    }
  }
  if (pos !== b.length) fail(`invalid msgpack: ${b.length - pos} trailing bytes`);
}
