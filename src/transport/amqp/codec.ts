/**
 * WireMessage ⇄ AMQP basic properties, written to match py-amqp 5.1.1
 * byte for byte (test/fixtures/celery-5.2.6/amqp/client_publish_calls.json):
 *
 * - every header value is typed as py-amqp types it: `str` → `S`,
 *   `bool` → `t`, float → `d`, int → `I` (signed 32) or a 64-bit integer
 *   beyond ±2^31−1, `None` → `V`, list → `A`, dict → `F`. amqplib on its
 *   own would pick the smallest integer type (`b`, `s`), which Python reads
 *   fine but which is not what Python writes.
 * - `priority` is always present (Python writes 0), `delivery_mode`
 *   defaults to 2, `reply_to` is omitted when empty, `expiration` is the
 *   string of milliseconds Celery computes.
 *
 * One known difference: 64-bit integers go out as RabbitMQ's `l` (signed
 * 64-bit) because amqplib cannot write py-amqp's `L`; RabbitMQ and
 * py-amqp both read `l` (py-amqp as unsigned, so only negative values
 * beyond −2^31 would differ). A `bigint` goes out exactly; one beyond
 * signed 64 bits has no AMQP type (py-amqp refuses it too) and is refused.
 */
import type { MessageProperties, Options } from 'amqplib';
import { DecodeError } from '../../errors.ts';
import type { MessageProperties as WireProperties, WireMessage } from '../../protocol/types.ts';
import { MALFORMED, MAX_TABLE_DEPTH, TOO_DEEP } from './field-table.ts';

const INT32_MAX = 2147483647;
/** Largest magnitude a signed 64-bit field can hold, as a double. */
const INT64_LIMIT = 9223372036854775807;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/** amqplib's explicit-type form of a table value. */
interface Typed {
  '!': 'int' | 'long' | 'double' | 'timestamp';
  value: number | bigint;
}

/** Type one value the way py-amqp does (see the module comment). */
function tableValue(v: unknown, depth: number): unknown {
  switch (typeof v) {
    case 'string':
    case 'boolean':
      return v;
    case 'number':
      if (!Number.isInteger(v)) return { '!': 'double', value: v } satisfies Typed;
      if (v <= INT32_MAX && v >= -INT32_MAX) return { '!': 'int', value: v === 0 ? 0 : v } satisfies Typed;
      return Math.abs(v) < INT64_LIMIT ? ({ '!': 'long', value: v } satisfies Typed) : ({ '!': 'double', value: v } satisfies Typed);
    case 'bigint':
      if (v < INT64_MIN || v > INT64_MAX) throw new DecodeError(`header integer ${v} does not fit in a signed 64-bit AMQP field`, { code: 'ERR_HEADER_TYPE' });
      return { '!': 'long', value: v } satisfies Typed;
    case 'undefined':
      return null;
    case 'object': {
      if (v === null) return null;
      if (depth > MAX_TABLE_DEPTH) throw new DecodeError(`header value nested deeper than ${MAX_TABLE_DEPTH} levels`, { code: 'ERR_HEADER_DEPTH' });
      if (Array.isArray(v)) return v.map((x) => tableValue(x, depth + 1));
      if (Buffer.isBuffer(v)) return v.toString('utf8');
      if (v instanceof Date) return { '!': 'timestamp', value: Math.floor(v.getTime() / 1000) } satisfies Typed;
      return encodeTable(v as Record<string, unknown>, depth + 1);
    }
    default:
      // Functions and symbols are not data; py-amqp would refuse them too.
      throw new DecodeError(`header value of type ${typeof v} cannot be sent over AMQP`, { code: 'ERR_HEADER_TYPE' });
  }
}

/** Encode a headers object as an amqplib field table with py-amqp's types, keeping key order. */
export function encodeTable(table: Readonly<Record<string, unknown>>, depth = 0): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(table)) {
    const v = table[key];
    // py-amqp skips nothing, but `undefined` has no Python counterpart: leave it out.
    if (v !== undefined) out[key] = tableValue(v, depth);
  }
  return out;
}

/** amqplib publish options (basic properties) for a message. */
export function publishOptions(message: WireMessage, priority: number | undefined, mandatory: boolean): Options.Publish {
  const p = message.properties;
  const o: Options.Publish = {
    contentType: message.contentType,
    contentEncoding: message.contentEncoding,
    headers: encodeTable(message.headers),
    deliveryMode: typeof p.delivery_mode === 'number' ? p.delivery_mode : 2,
    priority: clampPriority(priority ?? p.priority),
    mandatory,
  };
  if (typeof p.correlation_id === 'string' && p.correlation_id !== '') o.correlationId = p.correlation_id;
  if (typeof p.reply_to === 'string' && p.reply_to !== '') o.replyTo = p.reply_to;
  if (p.expiration !== undefined && p.expiration !== null && p.expiration !== '') o.expiration = String(p.expiration);
  // The other AMQP properties pass through when present; anything else (kombu's
  // Redis-only keys, 5.2.6's leaked `origin`) has no place in AMQP and is dropped.
  if (typeof p.message_id === 'string') o.messageId = p.message_id;
  if (typeof p.timestamp === 'number') o.timestamp = p.timestamp;
  if (typeof p.type === 'string') o.type = p.type;
  if (typeof p.user_id === 'string') o.userId = p.user_id;
  if (typeof p.app_id === 'string') o.appId = p.app_id;
  return o;
}

function clampPriority(v: unknown): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) return 0;
  return Math.min(255, Math.max(0, Math.round(v)));
}

/** Turn amqplib's decoded table values into plain JSON-like values (64-bit integers beyond ±2^53 stay bigint). */
function plainValue(v: unknown, depth: number): unknown {
  if (v === null || typeof v !== 'object') return v;
  if (v === TOO_DEEP) throw new DecodeError(`header value nested deeper than ${MAX_TABLE_DEPTH} levels`, { code: 'ERR_HEADER_DEPTH' });
  if (depth > MAX_TABLE_DEPTH) throw new DecodeError(`header value nested deeper than ${MAX_TABLE_DEPTH} levels`, { code: 'ERR_HEADER_DEPTH' });
  if (Buffer.isBuffer(v)) return v.toString('utf8');
  if (Array.isArray(v)) return v.map((x) => plainValue(x, depth + 1));
  const typed = v as { '!'?: unknown; value?: unknown };
  if (typeof typed['!'] === 'string' && Object.keys(v).length === 2 && 'value' in typed) {
    if (typed['!'] === 'timestamp' && (typeof typed.value === 'number' || typeof typed.value === 'bigint')) return typed.value;
    if (typed['!'] === 'decimal') {
      const d = typed.value as { places?: unknown; digits?: unknown };
      if (typeof d?.places === 'number' && typeof d.digits === 'number') return d.digits / 10 ** d.places;
    }
  }
  return plainTable(v as Record<string, unknown>, depth + 1);
}

function plainTable(t: Record<string, unknown>, depth: number): Record<string, unknown> {
  const fault = (t as Record<symbol, unknown>)[MALFORMED];
  if (fault !== undefined) {
    const id = typeof t.id === 'string' ? ` (task id ${JSON.stringify(t.id.slice(0, 64))})` : '';
    throw new DecodeError(`${String(fault)}${id}`, { code: 'ERR_HEADER_TABLE' });
  }
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(t)) {
    // Refused as on the JSON path: never dropped silently, never near an object's prototype slot.
    if (key === '__proto__') throw new DecodeError('forbidden header key "__proto__"', { code: 'ERR_FORBIDDEN_KEY' });
    out[key] = plainValue(t[key], depth);
  }
  return out;
}

/**
 * A received message as a WireMessage. Throws `DecodeError` when the
 * headers nest deeper than the limit or did not decode (such a message is
 * dead-lettered by the consumer, which keeps its connection).
 */
export function wireMessageFrom(properties: MessageProperties, content: Buffer): WireMessage {
  const props: WireProperties = {};
  if (properties.correlationId !== undefined) props.correlation_id = String(properties.correlationId);
  if (properties.replyTo !== undefined) props.reply_to = String(properties.replyTo);
  if (properties.deliveryMode !== undefined) props.delivery_mode = Number(properties.deliveryMode);
  props.priority = typeof properties.priority === 'number' ? properties.priority : 0;
  if (properties.expiration !== undefined) props.expiration = String(properties.expiration);
  if (properties.messageId !== undefined) props.message_id = properties.messageId;
  if (properties.timestamp !== undefined) props.timestamp = properties.timestamp;
  if (properties.type !== undefined) props.type = properties.type;
  if (properties.userId !== undefined) props.user_id = properties.userId;
  if (properties.appId !== undefined) props.app_id = properties.appId;
  const headers = properties.headers && typeof properties.headers === 'object' ? plainTable(properties.headers as Record<string, unknown>, 0) : {};
  return {
    headers,
    properties: props,
    contentType: typeof properties.contentType === 'string' ? properties.contentType : '',
    contentEncoding: typeof properties.contentEncoding === 'string' ? properties.contentEncoding : '',
    body: content,
  };
}
