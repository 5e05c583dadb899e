/**
 * MessagePack as Python's `msgpack` writes it (`use_bin_type=True`):
 * str → str type, bytes → bin type, maps decoded to plain objects.
 */
import { Packr } from 'msgpackr';
import { DecodeError } from '../errors.ts';
import { assertNoPrototypeKeys } from './json.ts';
import { DEFAULT_DECODE_LIMITS, type DecodeLimits } from './limits.ts';

// msgpackr renames a `__proto__` key to `__proto_`, so decoding itself never
// touches a prototype; records off so the bytes stay plain MessagePack.
const packr = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number', variableMapSize: true });

/** Encode a value as MessagePack bytes. */
export function encodeMsgpack(value: unknown): Buffer {
  return packr.pack(value);
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

/**
 * Walk the MessagePack structure iteratively (no recursion, no allocation of
 * values) to enforce depth and container-size limits before decoding, and to
 * reject truncated input early.
 */
export function scanMsgpackLimits(b: Uint8Array, limits: DecodeLimits): void {
  // remaining[i] = items still expected in the container at depth i+1
  const remaining: number[] = [];
  let pos = 0;
  let rootDone = false;
  const fail = (why: string, code = 'ERR_INVALID_MSGPACK'): never => {
    throw new DecodeError(why, { code });
  };
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
  const open = (items: number): void => {
    if (items > limits.maxItems) fail(`a container holds more than ${limits.maxItems} items`, 'ERR_TOO_MANY_ITEMS');
    if (items === 0) return;
    if (remaining.length + 1 > limits.maxDepth) fail(`nesting deeper than ${limits.maxDepth} levels`, 'ERR_TOO_DEEP');
    remaining.push(items);
  };
  while (!rootDone || remaining.length > 0) {
    if (rootDone && remaining.length === 0) break;
    need(1);
    const t = b[pos++]!;
    let containerOpened = false;
    if (t <= 0x7f || t >= 0xe0 || t === 0xc0 || t === 0xc2 || t === 0xc3) {
      // fixint, nil, bool
    } else if (t >= 0x80 && t <= 0x8f) {
      open((t & 0x0f) * 2);
      containerOpened = (t & 0x0f) > 0;
    } else if (t >= 0x90 && t <= 0x9f) {
      open(t & 0x0f);
      containerOpened = (t & 0x0f) > 0;
    } else if (t >= 0xa0 && t <= 0xbf) {
      skip(t & 0x1f);
    } else {
      switch (t) {
        case 0xc4: need(1); skip(b[pos++]!); break;
        case 0xc5: skip(u16()); break;
        case 0xc6: skip(u32()); break;
        case 0xc7: need(1); skip(b[pos++]! + 1); break;
        case 0xc8: skip(u16() + 1); break;
        case 0xc9: skip(u32() + 1); break;
        case 0xca: skip(4); break;
        case 0xcb: skip(8); break;
        case 0xcc: case 0xd0: skip(1); break;
        case 0xcd: case 0xd1: skip(2); break;
        case 0xce: case 0xd2: skip(4); break;
        case 0xcf: case 0xd3: skip(8); break;
        case 0xd4: skip(2); break;
        case 0xd5: skip(3); break;
        case 0xd6: skip(5); break;
        case 0xd7: skip(9); break;
        case 0xd8: skip(17); break;
        case 0xd9: need(1); skip(b[pos++]!); break;
        case 0xda: skip(u16()); break;
        case 0xdb: skip(u32()); break;
        case 0xdc: { const n = u16(); open(n); containerOpened = n > 0; break; }
        case 0xdd: { const n = u32(); open(n); containerOpened = n > 0; break; }
        case 0xde: { const n = u16(); open(n * 2); containerOpened = n > 0; break; }
        case 0xdf: { const n = u32(); open(n * 2); containerOpened = n > 0; break; }
        default: fail(`invalid msgpack: unknown type byte 0x${t.toString(16)}`);
      }
    }
    if (containerOpened) continue;
    // one value finished: count it against its parents
    if (remaining.length === 0) {
      rootDone = true;
    } else {
      while (remaining.length > 0) {
        const top = remaining.length - 1;
        remaining[top] = remaining[top]! - 1;
        if (remaining[top]! > 0) break;
        remaining.pop();
      }
      if (remaining.length === 0) rootDone = true;
    }
  }
  if (pos !== b.length) fail(`invalid msgpack: ${b.length - pos} trailing bytes`);
}
