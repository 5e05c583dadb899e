/**
 * Events are untrusted input: anyone who can write to the broker can
 * publish on `celeryev`. A message is decoded under small limits (no
 * pickle, no prototype keys, bounded size and depth), then each event is
 * checked with zod: bounded strings, finite numbers, the fields of its type.
 * Whatever fails is reported as malformed with a short reason, never thrown.
 */
import { z } from 'zod';
import { assertNoPrototypeKeys } from '../../codec/json.ts';
import { decodeByContentType } from '../../codec/serializers.ts';
import type { DecodeLimits } from '../../codec/limits.ts';
import type { WireMessage } from '../../protocol/types.ts';
import { type CeleryEvent } from './types.ts';

/** Limits on one event message and on each event in it. */
export interface EventLimits {
  /** Largest accepted body, bytes (default 1 MiB). */
  maxBytes: number;
  /** Deepest nesting (default 16). */
  maxDepth: number;
  /** Most entries in one object or array, and most events in one `task.multi` group (default 10,000). */
  maxItems: number;
  /** Longest identifier-like string: hostname, uuid, name, queue… (default 1,024). */
  maxNameLength: number;
  /** Longest text field: args, kwargs, result, exception, traceback… (default 64 KiB). */
  maxTextLength: number;
}

export const DEFAULT_EVENT_LIMITS: Readonly<EventLimits> = Object.freeze({
  maxBytes: 1024 * 1024,
  maxDepth: 16,
  maxItems: 10_000,
  maxNameLength: 1024,
  maxTextLength: 64 * 1024,
});

/** Content types an event may use: Celery's `event_serializer` is json by default; msgpack is also safe to decode. Never pickle or yaml. */
export const EVENT_CONTENT_TYPES: ReadonlySet<string> = new Set(['application/json', 'application/x-msgpack']);

function schemas(l: EventLimits) {
  const name = z.string().max(l.maxNameLength);
  const text = z.string().max(l.maxTextLength);
  const num = z.number().finite();
  const count = z.number().int().nonnegative();
  const nameOrNull = name.nullable();
  const base = {
    type: z.string().min(1).max(128),
    hostname: name,
    timestamp: num,
    utcoffset: num.optional(),
    pid: z.number().int().optional(),
    clock: count.optional(),
  };
  const task = { ...base, uuid: name.min(1) };
  const worker = z.looseObject({
    ...base,
    freq: num.nonnegative().optional(),
    active: count.optional(),
    processed: count.optional(),
    loadavg: z.array(num).max(8).nullable().optional(),
    sw_ident: name.optional(),
    sw_ver: name.optional(),
    sw_sys: name.optional(),
  });
  const sent = z.looseObject({
    ...task,
    name: name.optional(),
    args: text.optional(),
    kwargs: text.optional(),
    retries: count.optional(),
    eta: nameOrNull.optional(),
    expires: nameOrNull.optional(),
    root_id: nameOrNull.optional(),
    parent_id: nameOrNull.optional(),
    queue: name.optional(),
    exchange: z.string().max(l.maxNameLength).optional(),
    routing_key: name.optional(),
  });
  const failed = z.looseObject({ ...task, exception: text.optional(), traceback: text.optional() });
  const byType: Record<string, z.ZodType> = {
    'worker-online': worker,
    'worker-heartbeat': worker,
    'worker-offline': worker,
    'task-sent': sent,
    'task-received': sent,
    'task-started': z.looseObject(task),
    'task-succeeded': z.looseObject({ ...task, result: text.optional(), runtime: num.optional() }),
    'task-failed': failed,
    'task-retried': failed,
    'task-rejected': z.looseObject({ ...task, requeue: z.boolean().optional() }),
    'task-revoked': z.looseObject({ ...task, terminated: z.boolean().optional(), signum: z.union([z.number().int(), name]).nullable().optional(), expired: z.boolean().optional() }),
  };
  // Any extra field: a string, a number, a boolean, null, or a bounded container (depth and size are bounded by the decoder).
  return { byType, generic: z.looseObject(base), text };
}

type Schemas = ReturnType<typeof schemas>;
const cache = new WeakMap<EventLimits, Schemas>();

function schemasFor(limits: EventLimits): Schemas {
  let s = cache.get(limits);
  if (!s) cache.set(limits, (s = schemas(limits)));
  return s;
}

/** Outcome of reading one message: the good events, and a reason for each bad one. */
export interface ParsedEvents {
  events: CeleryEvent[];
  malformed: string[];
}

function firstIssue(error: z.ZodError): string {
  const issue = error.issues[0];
  if (!issue) return 'invalid event';
  const path = issue.path.map(String).join('.');
  return `${path ? `${path}: ` : ''}${issue.message}`.slice(0, 200);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !Buffer.isBuffer(v) && !(v instanceof Uint8Array);
}

/** Longest extra string: above it the event is refused even where the field is unknown. */
function checkExtras(event: Record<string, unknown>, s: Schemas): string | undefined {
  for (const v of Object.values(event)) {
    if (typeof v === 'string' && !s.text.safeParse(v).success) return 'a field is longer than maxTextLength';
    if (typeof v === 'bigint') return 'an integer beyond 2^53';
  }
  return undefined;
}

/** Check one decoded event; `localReceived` is added. */
export function parseEvent(value: unknown, localReceived: number, limits: EventLimits = DEFAULT_EVENT_LIMITS): { event: CeleryEvent } | { malformed: string } {
  if (!isPlainObject(value)) return { malformed: 'an event is not an object' };
  // The decoder refuses these already; a caller may hand in an object from elsewhere (JSON.parse keeps an own __proto__ key).
  try {
    assertNoPrototypeKeys(value);
  } catch (err) {
    return { malformed: (err as Error).message.slice(0, 200) };
  }
  const s = schemasFor(limits);
  const type = value.type;
  const schema = typeof type === 'string' && Object.hasOwn(s.byType, type) ? s.byType[type]! : s.generic;
  const r = schema.safeParse(value);
  if (!r.success) return { malformed: `${typeof type === 'string' ? type.slice(0, 64) : 'event'}: ${firstIssue(r.error)}` };
  const event = r.data as Record<string, unknown>;
  const extra = checkExtras(event, s);
  if (extra) return { malformed: `${String(type).slice(0, 64)}: ${extra}` };
  event.local_received = localReceived;
  return { event: event as CeleryEvent };
}

/**
 * Decode an event message (one event, or Celery's `task.multi` group: a
 * list) and check every event in it.
 */
export function parseEventMessage(message: WireMessage, localReceived: number, limits: EventLimits = DEFAULT_EVENT_LIMITS): ParsedEvents {
  const decodeLimits: DecodeLimits = { maxBytes: limits.maxBytes, maxDepth: limits.maxDepth, maxItems: limits.maxItems, bigIntegers: 'refuse', maxInflateRatio: 50 };
  let body: unknown;
  try {
    body = decodeByContentType(message.body, message.contentType, EVENT_CONTENT_TYPES, decodeLimits, { compression: message.headers.compression, contentEncoding: message.contentEncoding });
  } catch (err) {
    return { events: [], malformed: [`undecodable: ${((err as Error).message ?? String(err)).slice(0, 200)}`] };
  }
  const items = Array.isArray(body) ? body : [body];
  const out: ParsedEvents = { events: [], malformed: [] };
  for (const item of items) {
    const r = parseEvent(item, localReceived, limits);
    if ('event' in r) out.events.push(r.event);
    else out.malformed.push(r.malformed);
  }
  return out;
}
