/**
 * A depth-limited AMQP field-table decoder, installed in place of
 * amqplib's own (`lib/codec.js` `decodeFields`, which recurses without a
 * limit). Without it, one message whose headers nest a few thousand
 * arrays deep — any client with write access can publish it, RabbitMQ
 * accepts it — overflows the stack inside amqplib's frame parser, which
 * closes the connection; the message is redelivered and the consumer
 * reconnects into the same crash, forever, with every message behind it
 * stuck.
 *
 * This decoder returns exactly what amqplib's does for any table nested up
 * to {@link MAX_TABLE_DEPTH} levels; a deeper table or array is skipped by
 * its length prefix (no recursion) and replaced by {@link TOO_DEEP}, which
 * the consumer turns into a dead-lettered malformed message.
 *
 * `installFieldTableGuard()` must run before amqplib's `lib/defs.js` is
 * loaded (it copies `decodeFields` when it loads); `src/amqp/connection.ts`
 * imports this module first for that reason. If amqplib was loaded
 * earlier by someone else, the guard reports that it is not active.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

/** Deepest nesting of tables/arrays decoded; deeper parts become TOO_DEEP. */
export const MAX_TABLE_DEPTH = 64;

/** Stands in for a table or array nested deeper than the limit. */
export const TOO_DEEP: Readonly<{ '!': 'too-deep' }> = Object.freeze({ '!': 'too-deep' as const });

/** Decode a field table (the bytes after its length prefix), like amqplib, but bounded. */
export function decodeFieldsBounded(slice: Buffer, depth = 0): Record<string, unknown> {
  const fields: Record<string, unknown> = {};
  let offset = 0;
  const size = slice.length;

  const value = (d: number): unknown => {
    const tag = String.fromCharCode(slice[offset]!);
    offset++;
    let len: number;
    let v: unknown;
    switch (tag) {
      case 'b':
        v = slice.readInt8(offset);
        offset++;
        return v;
      case 'B':
        v = slice.readUInt8(offset);
        offset++;
        return v;
      case 'S':
        len = slice.readUInt32BE(offset);
        offset += 4;
        v = slice.toString('utf8', offset, offset + len);
        offset += len;
        return v;
      case 'I':
        v = slice.readInt32BE(offset);
        offset += 4;
        return v;
      case 'i':
        v = slice.readUInt32BE(offset);
        offset += 4;
        return v;
      case 'D': {
        const places = slice[offset]!;
        offset++;
        const digits = slice.readUInt32BE(offset);
        offset += 4;
        return { '!': 'decimal', value: { places, digits } };
      }
      case 'T':
        v = Number(slice.readBigUInt64BE(offset));
        offset += 8;
        return { '!': 'timestamp', value: v };
      case 'F':
        len = slice.readUInt32BE(offset);
        offset += 4;
        v = d + 1 > MAX_TABLE_DEPTH ? TOO_DEEP : decodeFieldsBounded(slice.subarray(offset, offset + len), d + 1);
        offset += len;
        return v;
      case 'A': {
        len = slice.readUInt32BE(offset);
        offset += 4;
        const until = offset + len;
        if (d + 1 > MAX_TABLE_DEPTH) {
          offset = until;
          return TOO_DEEP;
        }
        const vals: unknown[] = [];
        while (offset < until) vals.push(value(d + 1));
        return vals;
      }
      case 'd':
        v = slice.readDoubleBE(offset);
        offset += 8;
        return v;
      case 'f':
        v = slice.readFloatBE(offset);
        offset += 4;
        return v;
      case 'l':
        v = Number(slice.readBigInt64BE(offset));
        offset += 8;
        return v;
      case 's':
        v = slice.readInt16BE(offset);
        offset += 2;
        return v;
      case 'u':
        v = slice.readUInt16BE(offset);
        offset += 2;
        return v;
      case 't':
        v = slice[offset] !== 0;
        offset++;
        return v;
      case 'V':
        return null;
      case 'x':
        len = slice.readUInt32BE(offset);
        offset += 4;
        v = slice.subarray(offset, offset + len);
        offset += len;
        return v;
      default:
        throw new TypeError(`Unexpected type tag "${tag}"`);
    }
  };

  while (offset < size) {
    const len = slice.readUInt8(offset);
    offset++;
    const key = slice.toString('utf8', offset, offset + len);
    offset += len;
    fields[key] = value(depth);
  }
  return fields;
}

let state: 'active' | 'inactive' | undefined;

/**
 * Replace amqplib's field-table decoder by the bounded one. Returns
 * whether the guard is active (false when amqplib's protocol definitions
 * were loaded before this ran, or its layout changed).
 */
export function installFieldTableGuard(): boolean {
  if (state) return state === 'active';
  state = 'inactive';
  try {
    const require = createRequire(import.meta.url);
    const lib = join(dirname(require.resolve('amqplib')), 'lib');
    const defsPath = join(lib, 'defs.js');
    const codec = require(join(lib, 'codec.js')) as { decodeFields?: unknown };
    if (typeof codec.decodeFields !== 'function') return false;
    // defs.js copies decodeFields when it loads: too late if it is loaded already.
    if (require.cache[defsPath]) return false;
    codec.decodeFields = (slice: Buffer) => decodeFieldsBounded(slice, 0);
    state = 'active';
    return true;
  } catch {
    return false;
  }
}

/** Whether the guard is in place (see `installFieldTableGuard`). */
export function fieldTableGuardActive(): boolean {
  return state === 'active';
}

installFieldTableGuard();
