/**
 * kombu's Redis envelope: the JSON object stored in a queue list, with the
 * body base64-encoded and the AMQP properties flattened beside it.
 */
import { decodeJsonText, stringifyJson } from '../../codec/json.ts';
import type { DecodeLimits } from '../../codec/limits.ts';
import { DecodeError } from '../../errors.ts';
import type { WireMessage } from '../../protocol/types.ts';

/** Routing facts kombu stores with each envelope. */
export interface EnvelopeRouting {
  exchange: string;
  routingKey: string;
  deliveryTag: string;
}

/** Properties the envelope writes in kombu's fixed positions. */
const PLACED_PROPERTIES: ReadonlySet<string> = new Set(['correlation_id', 'reply_to', 'delivery_mode', 'expiration', 'priority', 'delivery_info', 'body_encoding', 'delivery_tag']);

/**
 * Serialize a message as kombu does (same key order, base64 body). The body
 * is copied as base64 once; headers and properties are not re-encoded.
 */
export function encodeRedisEnvelope(message: WireMessage, routing: EnvelopeRouting): string {
  const p = message.properties;
  const properties: Record<string, unknown> = {
    correlation_id: p.correlation_id,
    reply_to: p.reply_to ?? '',
    delivery_mode: p.delivery_mode ?? 2,
  };
  if (p.expiration !== undefined) properties.expiration = p.expiration;
  // for…in rather than Object.entries: no array per message on the send path.
  for (const k in p) {
    if (!PLACED_PROPERTIES.has(k)) properties[k] = (p as Record<string, unknown>)[k];
  }
  properties.delivery_info = { exchange: routing.exchange, routing_key: routing.routingKey };
  properties.priority = p.priority ?? 0;
  properties.body_encoding = 'base64';
  properties.delivery_tag = routing.deliveryTag;
  // stringifyJson: a header holding a bigint (an exact 64-bit AMQP integer) is written as the same integer.
  // The body goes in as it is: base64 needs no JSON escaping, so the (large) body is not scanned again,
  // and the text is byte for byte what stringifying the whole envelope writes.
  const rest = stringifyJson({ 'content-encoding': message.contentEncoding, 'content-type': message.contentType, headers: message.headers, properties });
  return `{"body":"${message.body.toString('base64')}",${rest.slice(1)}`;
}

/** An envelope read back from a list. */
export interface DecodedEnvelope {
  message: WireMessage;
  routing: EnvelopeRouting;
  redelivered: boolean;
}

/**
 * Parse an envelope under the decoding limits (the envelope limit is the
 * body limit plus base64 overhead and room for headers).
 */
export function decodeRedisEnvelope(raw: string, limits: DecodeLimits): DecodedEnvelope {
  const env = decodeJsonText(raw, envelopeLimits(limits));
  if (env === null || typeof env !== 'object' || Array.isArray(env)) throw new DecodeError('envelope is not a JSON object', { code: 'ERR_ENVELOPE' });
  const e = env as Record<string, unknown>;
  // kombu writes every one of these; a message without them is not one it sent.
  if (!isObject(e.properties)) throw new DecodeError('envelope has no properties object', { code: 'ERR_ENVELOPE' });
  if (!isObject(e.headers)) throw new DecodeError('envelope has no headers object', { code: 'ERR_ENVELOPE' });
  if (typeof e.body !== 'string') throw new DecodeError('envelope has no string body', { code: 'ERR_ENVELOPE' });
  if (typeof e['content-type'] !== 'string') throw new DecodeError('envelope has no string content-type', { code: 'ERR_ENVELOPE' });
  if (typeof e['content-encoding'] !== 'string') throw new DecodeError('envelope has no string content-encoding', { code: 'ERR_ENVELOPE' });
  const props = e.properties as Record<string, unknown>;
  const headers = e.headers as Record<string, unknown>;
  if (props.delivery_info !== undefined && !isObject(props.delivery_info)) throw new DecodeError('envelope delivery_info is not an object', { code: 'ERR_ENVELOPE' });
  const encoding = props.body_encoding;
  let body: Buffer;
  if (encoding === 'base64') {
    body = decodeBase64Strict(e.body);
  } else if (encoding === undefined || encoding === null || encoding === 'utf-8') {
    body = Buffer.from(e.body, 'utf8');
  } else {
    throw new DecodeError(`unsupported body_encoding ${JSON.stringify(encoding)}`, { code: 'ERR_ENVELOPE' });
  }
  if (body.length > limits.maxBytes) {
    throw new DecodeError(`body of ${body.length} bytes exceeds the ${limits.maxBytes}-byte limit`, { code: 'ERR_TOO_LARGE' });
  }
  const info = isObject(props.delivery_info) ? (props.delivery_info as Record<string, unknown>) : {};
  return {
    message: {
      headers,
      properties: props,
      contentType: e['content-type'],
      contentEncoding: e['content-encoding'],
      body,
    },
    routing: {
      exchange: typeof info.exchange === 'string' ? info.exchange : '',
      routingKey: typeof info.routing_key === 'string' ? info.routing_key : '',
      deliveryTag: typeof props.delivery_tag === 'string' ? props.delivery_tag : '',
    },
    redelivered: info.redelivered === true || headers.redelivered === true,
  };
}

/**
 * Standard base64 with padding, as kombu writes it. Node's decoder skips
 * what is not base64 (whitespace, stray characters) and also reads the
 * URL-safe alphabet, where Python's would drop those characters: either way
 * the two would decode different bytes, so such text is refused. Checked
 * without a scan of the text: a skipped character shows as a short result.
 */
function decodeBase64Strict(text: string): Buffer {
  const body = Buffer.from(text, 'base64');
  const pad = text.endsWith('==') ? 2 : text.endsWith('=') ? 1 : 0;
  if (text.length % 4 !== 0 || body.length !== (text.length / 4) * 3 - pad || text.includes('-') || text.includes('_')) {
    throw new DecodeError('envelope body is not standard padded base64', { code: 'ERR_ENVELOPE' });
  }
  return body;
}

/** The envelope limits of each body limits object, made once (not per message). */
const ENVELOPE_LIMITS = new WeakMap<DecodeLimits, DecodeLimits>();

function envelopeLimits(limits: DecodeLimits): DecodeLimits {
  let l = ENVELOPE_LIMITS.get(limits);
  if (!l || l.maxBytes !== Math.ceil((limits.maxBytes * 4) / 3) + 256 * 1024 || l.maxDepth !== limits.maxDepth || l.maxItems !== limits.maxItems) {
    l = { ...limits, maxBytes: Math.ceil((limits.maxBytes * 4) / 3) + 256 * 1024 };
    ENVELOPE_LIMITS.set(limits, l);
  }
  return l;
}

function isObject(v: unknown): boolean {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** kombu's priority separator: the two bytes 0x06 0x16. */
export const PRIORITY_SEP = '\x06\x16';

/** The list key of a queue's priority bucket: `celery`, `celery\x06\x163`, … */
export function priorityQueueKey(queue: string, step: number): string {
  return step === 0 ? queue : `${queue}${PRIORITY_SEP}${step}`;
}

/** Strip a bucket suffix from a list key to get the queue name. */
export function queueOfKey(key: string): string {
  const i = key.indexOf(PRIORITY_SEP);
  return i < 0 ? key : key.slice(0, i);
}
