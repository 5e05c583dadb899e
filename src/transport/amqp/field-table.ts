/**
 * The AMQP field-table decoder Celeriac installs in place of amqplib's own
 * (`lib/codec.js` `decodeFields`), and a guard around amqplib's content
 * header decoding. amqplib decodes the headers of a delivery inside its
 * frame parser, where any exception closes the whole connection: the
 * message is redelivered and the consumer reconnects into the same fault,
 * for ever, with every message behind it stuck. Two such faults were real:
 * a table nested a few thousand levels deep overflowed the stack, and
 * py-amqp's `L` (the type it writes for every int beyond ±2^31) was an
 * unknown type to amqplib.
 *
 * So here: every field type RabbitMQ's parser accepts decodes (64-bit
 * integers exactly, as bigint beyond ±2^53); a table nested deeper than
 * {@link MAX_TABLE_DEPTH} is skipped by its length prefix (no recursion)
 * and replaced by {@link TOO_DEEP}; and nothing throws — a table that does
 * not decode, or a content header whose properties do not, yields headers
 * marked {@link MALFORMED}. `wireMessageFrom` turns both marks into a
 * `DecodeError`, and the consumer dead-letters that one message and keeps
 * its connection.
 *
 * `installFieldTableGuard()` must run before amqplib's `lib/defs.js` and
 * `lib/frame.js` are loaded (they copy `decodeFields` and `decode` when
 * they load); `src/transport/amqp/connection.ts` imports this module first for that
 * reason. If amqplib was loaded earlier by someone else, the guard reports
 * that it is not active.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

/** Deepest nesting of tables/arrays decoded; deeper parts become TOO_DEEP. */
export const MAX_TABLE_DEPTH = 64;

/** Stands in for a table or array nested deeper than the limit. */
export const TOO_DEEP: Readonly<{ '!': 'too-deep' }> = Object.freeze({ '!': 'too-deep' as const });

/**
 * Set (as a symbol key, invisible to `Object.keys`) on a header table that
 * did not decode, holding the reason; the fields decoded before the fault
 * are kept beside it, so the task id can still be named when the message
 * is dead-lettered.
 */
export const MALFORMED: unique symbol = Symbol('celeriac.malformedTable');

const MIN_SAFE = BigInt(Number.MIN_SAFE_INTEGER);
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** A 64-bit integer as a number when exact, else as a bigint (never rounded). */
function exactInt64(v: bigint): number | bigint {
  return v >= MIN_SAFE && v <= MAX_SAFE ? Number(v) : v;
}

class TableFault extends Error {}

/**
 * Decode a field table (the bytes after its length prefix) like amqplib,
 * but bounded, and total: it never throws. Every type RabbitMQ's parser
 * accepts (S T b B s u I i d f l L t D F A x V; `l` and `L` are both
 * signed 64-bit there, and py-amqp writes `L` for ints beyond ±2^31) is
 * decoded; anything else, or a length that runs past the table, makes the
 * result carry {@link MALFORMED}.
 */
export function decodeFieldsBounded(slice: Buffer, depth = 0): Record<string, unknown> {
  const fields: Record<string, unknown> = {};
  try {
    decodeInto(fields, slice, depth);
  } catch (err) {
    const reason = err instanceof TableFault ? err.message : `header table does not decode: ${(err as Error)?.message ?? String(err)}`;
    (fields as Record<symbol, unknown>)[MALFORMED] = reason;
  }
  return fields;
}

function decodeInto(fields: Record<string, unknown>, slice: Buffer, depth: number): void {
  let offset = 0;
  const size = slice.length;
  const need = (n: number, what: string): void => {
    if (offset + n > size) throw new TableFault(`header table truncated: ${what} needs ${n} bytes, ${size - offset} left`);
  };

  const value = (d: number): unknown => {
    need(1, 'a field type');
    const code = slice[offset]!;
    const tag = String.fromCharCode(code);
    offset++;
    let len: number;
    let v: unknown;
    switch (tag) {
      case 'b':
        need(1, 'b');
        v = slice.readInt8(offset);
        offset++;
        return v;
      case 'B':
        need(1, 'B');
        v = slice.readUInt8(offset);
        offset++;
        return v;
      case 'S':
        need(4, 'S');
        len = slice.readUInt32BE(offset);
        offset += 4;
        need(len, 'S');
        v = slice.toString('utf8', offset, offset + len);
        offset += len;
        return v;
      case 'I':
        need(4, 'I');
        v = slice.readInt32BE(offset);
        offset += 4;
        return v;
      case 'i':
        need(4, 'i');
        v = slice.readUInt32BE(offset);
        offset += 4;
        return v;
      case 'D': {
        need(5, 'D');
        const places = slice[offset]!;
        offset++;
        // py-amqp writes the digits signed (a negative Decimal); RabbitMQ passes the bytes through.
        const digits = slice.readInt32BE(offset);
        offset += 4;
        return { '!': 'decimal', value: { places, digits } };
      }
      case 'T':
        need(8, 'T');
        v = exactInt64(slice.readBigUInt64BE(offset));
        offset += 8;
        return { '!': 'timestamp', value: v };
      case 'F':
        need(4, 'F');
        len = slice.readUInt32BE(offset);
        offset += 4;
        need(len, 'F');
        if (d + 1 > MAX_TABLE_DEPTH) v = TOO_DEEP;
        else {
          const inner: Record<string, unknown> = {};
          decodeInto(inner, slice.subarray(offset, offset + len), d + 1);
          v = inner;
        }
        offset += len;
        return v;
      case 'A': {
        need(4, 'A');
        len = slice.readUInt32BE(offset);
        offset += 4;
        need(len, 'A');
        const until = offset + len;
        if (d + 1 > MAX_TABLE_DEPTH) {
          offset = until;
          return TOO_DEEP;
        }
        const vals: unknown[] = [];
        while (offset < until) vals.push(value(d + 1));
        if (offset !== until) throw new TableFault('header array: an element runs past the array');
        return vals;
      }
      case 'd':
        need(8, 'd');
        v = slice.readDoubleBE(offset);
        offset += 8;
        return v;
      case 'f':
        need(4, 'f');
        v = slice.readFloatBE(offset);
        offset += 4;
        return v;
      case 'l':
      case 'L':
        // Both signed, as RabbitMQ reads them; beyond ±2^53 a bigint, so nothing is rounded.
        need(8, tag);
        v = exactInt64(slice.readBigInt64BE(offset));
        offset += 8;
        return v;
      case 's':
        need(2, 's');
        v = slice.readInt16BE(offset);
        offset += 2;
        return v;
      case 'u':
        need(2, 'u');
        v = slice.readUInt16BE(offset);
        offset += 2;
        return v;
      case 't':
        need(1, 't');
        v = slice[offset] !== 0;
        offset++;
        return v;
      case 'V':
        return null;
      case 'x':
        need(4, 'x');
        len = slice.readUInt32BE(offset);
        offset += 4;
        need(len, 'x');
        v = slice.subarray(offset, offset + len);
        offset += len;
        return v;
      default:
        throw new TableFault(`header table has an unknown field type 0x${code.toString(16).padStart(2, '0')}`);
    }
  };

  while (offset < size) {
    need(1, 'a key length');
    const len = slice.readUInt8(offset);
    offset++;
    need(len, 'a key');
    const key = slice.toString('utf8', offset, offset + len);
    offset += len;
    fields[key] = value(depth);
  }
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
    const framePath = join(lib, 'frame.js');
    const codec = require(join(lib, 'codec.js')) as { decodeFields?: unknown };
    if (typeof codec.decodeFields !== 'function') return false;
    // defs.js copies decodeFields, and frame.js copies defs.decode, when they load: too late if they are loaded already.
    if (require.cache[defsPath] || require.cache[framePath]) return false;
    codec.decodeFields = (slice: Buffer) => decodeFieldsBounded(slice, 0);
    const defs = require(defsPath) as { decode?: unknown; BasicProperties?: unknown };
    const decode = defs.decode;
    if (typeof decode !== 'function' || typeof defs.BasicProperties !== 'number') return false;
    const basicProperties = defs.BasicProperties;
    defs.decode = (id: number, buf: Buffer): unknown => {
      try {
        return (decode as (id: number, buf: Buffer) => unknown)(id, buf);
      } catch (err) {
        // Method frames come from the broker itself; a content header carries what any publisher wrote.
        if (id !== basicProperties) throw err;
        return { headers: { [MALFORMED]: `message properties do not decode: ${(err as Error)?.message ?? String(err)}` } };
      }
    };
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
