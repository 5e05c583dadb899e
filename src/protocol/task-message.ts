/**
 * Build and parse Celery task messages (protocol v2, and v1 on input).
 * Pure: bytes and values in, values out.
 */
import { ProtocolError } from '../errors.ts';
import { COMPRESSION_HEADER, compressBody, compressionContentType, type CompressionName } from '../codec/compression.ts';
import type { Serializer } from '../codec/serializers.ts';
import { clientOrigin } from './ids.ts';
import { reprArgs, reprKwargs } from './pyrepr.ts';
import { parseIso, toIsoUtc } from './time.ts';
import type { Embed, JsonValue, SignatureDict, TaskBody, TaskHeaders, WireMessage } from './types.ts';

/** Everything needed to build one task message. Times are epoch milliseconds. */
export interface TaskMessageInput {
  task: string;
  id: string;
  args: readonly unknown[];
  kwargs: Readonly<Record<string, unknown>>;
  eta?: number | null;
  expires?: number | null;
  group?: string | null;
  groupIndex?: number | null;
  retries?: number;
  /** `[hard, soft]` seconds. */
  timeLimit?: [number | null, number | null];
  rootId?: string | null;
  parentId?: string | null;
  shadow?: string | null;
  origin?: string;
  ignoreResult?: boolean;
  priority?: number;
  replyTo?: string;
  embed?: Partial<Embed>;
  /** Extra headers (e.g. Celeriac's signature header); never overrides the standard ones. */
  extraHeaders?: Record<string, unknown>;
  /** Compress the body as kombu does (`zlib`/`gzip`: zlib data, header `compression: application/x-gzip`). */
  compression?: CompressionName;
  /** Current time, for the `expiration` property. */
  now?: number;
}

/** Encoded body of a task message (before any signing). */
export function encodeTaskBody(
  serializer: Serializer,
  args: readonly unknown[],
  kwargs: Readonly<Record<string, unknown>>,
  embed?: Partial<Embed>,
): Buffer {
  const fullEmbed: Embed = {
    callbacks: embed?.callbacks ?? null,
    errbacks: embed?.errbacks ?? null,
    chain: embed?.chain ?? null,
    chord: embed?.chord ?? null,
  };
  return serializer.encode([args, kwargs, fullEmbed]);
}

/** The 16 standard v2 headers, in Celery's order. */
export function buildTaskHeaders(input: TaskMessageInput): TaskHeaders {
  const headers: TaskHeaders = {
    lang: 'py',
    task: input.task,
    id: input.id,
    shadow: input.shadow ?? null,
    eta: input.eta != null ? toIsoUtc(input.eta) : null,
    expires: input.expires != null ? toIsoUtc(input.expires) : null,
    group: input.group ?? null,
    group_index: input.groupIndex ?? null,
    retries: input.retries ?? 0,
    timelimit: input.timeLimit ?? [null, null],
    root_id: input.rootId ?? input.id,
    parent_id: input.parentId ?? null,
    argsrepr: reprArgs(input.args),
    kwargsrepr: reprKwargs(input.kwargs as Record<string, unknown>),
    origin: input.origin ?? clientOrigin(),
    ignore_result: input.ignoreResult ?? false,
  };
  if (input.compression !== undefined) headers[COMPRESSION_HEADER] = compressionContentType(input.compression);
  if (input.extraHeaders) {
    for (const [k, v] of Object.entries(input.extraHeaders)) if (!(k in headers)) headers[k] = v;
  }
  return headers;
}

/** Build a complete v2 task message ready for any broker adapter. */
export function buildTaskMessage(input: TaskMessageInput, serializer: Serializer, body?: Buffer): WireMessage {
  const headers = buildTaskHeaders(input);
  const properties: WireMessage['properties'] = {
    correlation_id: input.id,
    reply_to: input.replyTo ?? '',
    delivery_mode: 2,
    priority: input.priority ?? 0,
  };
  if (input.expires != null) {
    properties.expiration = String(Math.max(0, Math.round(input.expires - (input.now ?? Date.now()))));
  }
  return {
    headers,
    properties,
    contentType: serializer.contentType,
    contentEncoding: serializer.contentEncoding,
    body: input.compression !== undefined ? compressBody(body ?? encodeTaskBody(serializer, input.args, input.kwargs, input.embed), input.compression) : (body ?? encodeTaskBody(serializer, input.args, input.kwargs, input.embed)),
  };
}

/** A task message after parsing and validation: what the worker acts on. */
export interface TaskRequest {
  id: string;
  /** Registered name used for dispatch (the `task` header). */
  task: string;
  args: JsonValue[];
  kwargs: Record<string, JsonValue>;
  embed: Embed;
  /** Epoch ms, or null. */
  eta: number | null;
  /** Epoch ms, or null. */
  expires: number | null;
  retries: number;
  timeLimit: [number | null, number | null];
  rootId: string;
  parentId: string | null;
  group: string | null;
  groupIndex: number | null;
  shadow: string | null;
  ignoreResult: boolean;
  origin: string | null;
  argsrepr: string;
  kwargsrepr: string;
  correlationId: string;
  replyTo: string;
  priority: number;
  /** 2 for v2 messages; 1 when converted from a v1 body. */
  protocol: 1 | 2;
  /** The headers as received (v1: rebuilt), for re-sending. */
  headers: Record<string, unknown>;
}

/** Decodes a message body (applying the accept list, limits and signature checks). */
export type BodyDecoder = (message: WireMessage) => unknown;

/** Read only the headers a worker needs before decoding the body (dispatch, eta, expires). */
export function peekTaskHeaders(message: WireMessage): { id: string | undefined; task: string | undefined } {
  const h = message.headers;
  return {
    id: typeof h.id === 'string' ? h.id : typeof message.properties.correlation_id === 'string' ? message.properties.correlation_id : undefined,
    task: typeof h.task === 'string' ? h.task : undefined,
  };
}

/**
 * Parse a task message. v2 messages are recognised by their `task` header;
 * a body that is an object with `task` is protocol v1 (or a hybrid) and is
 * converted the way Celery converts it. Throws `ProtocolError` for anything
 * that is not a runnable task message.
 */
export function parseTaskMessage(message: WireMessage, decodeBody: BodyDecoder): TaskRequest {
  const h = message.headers ?? {};
  const decoded = decodeBody(message);
  if (typeof h.task === 'string' && Array.isArray(decoded)) return fromV2(message, h, decoded);
  if (decoded !== null && typeof decoded === 'object' && !Array.isArray(decoded) && typeof (decoded as { task?: unknown }).task === 'string') {
    return fromV1(message, h, decoded as Record<string, unknown>);
  }
  if (typeof h.task === 'string') {
    throw new ProtocolError('body is not [args, kwargs, embed]', { hint: 'send protocol v2 messages' });
  }
  throw new ProtocolError('unknown message format: no task header and no v1 body', { hint: 'send protocol v2 messages' });
}

function fromV2(message: WireMessage, h: Record<string, unknown>, body: unknown[]): TaskRequest {
  // Celery unpacks exactly three: `args, kwargs, embed = body`.
  if (body.length !== 3) throw new ProtocolError(`body has ${body.length} elements, expected [args, kwargs, embed]`);
  const [args, kwargs, embedRaw] = body as [unknown, unknown, unknown];
  return assemble(message, h, 2, args, kwargs, normalizeEmbed(embedRaw));
}

function fromV1(message: WireMessage, h: Record<string, unknown>, body: Record<string, unknown>): TaskRequest {
  const headers: Record<string, unknown> = {
    lang: body.lang ?? 'py',
    task: body.task,
    id: body.id,
    root_id: body.root_id ?? null,
    parent_id: body.parent_id ?? null,
    group: body.group ?? body.taskset ?? null,
    group_index: body.group_index ?? null,
    shadow: body.shadow ?? null,
    eta: body.eta ?? null,
    expires: body.expires ?? null,
    retries: body.retries ?? 0,
    timelimit: body.timelimit ?? [null, null],
    argsrepr: body.argsrepr ?? '',
    kwargsrepr: body.kwargsrepr ?? '',
    origin: body.origin ?? null,
    ...h,
  };
  const embed = normalizeEmbed({ callbacks: body.callbacks ?? null, errbacks: body.errbacks ?? null, chain: null, chord: body.chord ?? null });
  return assemble(message, headers, 1, body.args ?? [], body.kwargs ?? {}, embed);
}

/** What a wrong value is, for messages (never the value itself: it may be large or hostile). */
function kindOf(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

/** A header that is a string or null/absent (Celery's `string | null` fields). */
function optString(h: Record<string, unknown>, name: string): string | null {
  const v = h[name];
  if (v === undefined || v === null) return null;
  if (typeof v !== 'string') throw new ProtocolError(`header ${name} is ${kindOf(v)}, expected a string or null`);
  return v;
}

/** A property that is a string or null/absent. */
function optProperty(p: Record<string, unknown>, name: string): string | null {
  const v = p[name];
  if (v === undefined || v === null) return null;
  if (typeof v !== 'string') throw new ProtocolError(`property ${name} is ${kindOf(v)}, expected a string`);
  return v;
}

function assemble(
  message: WireMessage,
  h: Record<string, unknown>,
  protocol: 1 | 2,
  args: unknown,
  kwargs: unknown,
  embed: Embed,
): TaskRequest {
  if (typeof h.task !== 'string' || h.task.length === 0) throw new ProtocolError('missing task name');
  // The id is a header (v2) or a body field (v1); Celery never falls back to correlation_id.
  const id = h.id;
  if (typeof id !== 'string' || id.length === 0 || id.length > 255) throw new ProtocolError('missing or invalid task id');
  if (!Array.isArray(args)) throw new ProtocolError('args is not an array');
  if (kwargs === null || typeof kwargs !== 'object' || Array.isArray(kwargs)) throw new ProtocolError('kwargs is not an object');
  const retries = h.retries ?? 0;
  if (typeof retries !== 'number' || !Number.isInteger(retries) || retries < 0) throw new ProtocolError('retries is not a non-negative integer');
  const props = message.properties as Record<string, unknown>;
  const priority = props.priority ?? 0;
  if (typeof priority !== 'number' || !Number.isInteger(priority) || priority < 0 || priority > 255) throw new ProtocolError('property priority is not an integer 0..255');
  const groupIndex = h.group_index ?? null;
  if (groupIndex !== null && (typeof groupIndex !== 'number' || !Number.isInteger(groupIndex) || groupIndex < 0)) throw new ProtocolError('header group_index is not a non-negative integer or null');
  const ignoreResult = h.ignore_result ?? false;
  if (typeof ignoreResult !== 'boolean') throw new ProtocolError(`header ignore_result is ${kindOf(ignoreResult)}, expected a boolean`);
  return {
    id,
    task: h.task,
    args: args as JsonValue[],
    kwargs: kwargs as Record<string, JsonValue>,
    embed,
    eta: parseTime(h.eta, 'eta'),
    expires: parseTime(h.expires, 'expires'),
    retries,
    timeLimit: parseTimeLimit(h.timelimit),
    rootId: optString(h, 'root_id') ?? id,
    parentId: optString(h, 'parent_id'),
    group: optString(h, 'group'),
    groupIndex: groupIndex as number | null,
    shadow: optString(h, 'shadow'),
    ignoreResult,
    origin: optString(h, 'origin'),
    argsrepr: optString(h, 'argsrepr') ?? '',
    kwargsrepr: optString(h, 'kwargsrepr') ?? '',
    correlationId: optProperty(props, 'correlation_id') ?? id,
    replyTo: optProperty(props, 'reply_to') ?? '',
    priority,
    protocol,
    headers: h,
  };
}

function parseTime(v: unknown, name: string): number | null {
  if (v === null || v === undefined) return null;
  if (typeof v !== 'string') throw new ProtocolError(`${name} is not an ISO-8601 string`);
  const t = parseIso(v);
  if (t === undefined) throw new ProtocolError(`${name} ${JSON.stringify(v.slice(0, 64))} does not parse as ISO-8601`);
  return t;
}

/** `[hard, soft]`: each null or a non-negative number of seconds (0 means no limit, as in Celery). */
function parseTimeLimit(v: unknown): [number | null, number | null] {
  if (v === null || v === undefined) return [null, null];
  if (!Array.isArray(v) || v.length !== 2) throw new ProtocolError('header timelimit is not [hard, soft]');
  const num = (x: unknown, which: string): number | null => {
    if (x === null) return null;
    if (typeof x !== 'number' || !Number.isFinite(x) || x < 0) throw new ProtocolError(`header timelimit ${which} limit is not a non-negative number or null`);
    return x > 0 ? x : null;
  };
  return [num(v[0], 'hard'), num(v[1], 'soft')];
}

function normalizeEmbed(raw: unknown): Embed {
  if (raw === null || raw === undefined) return { callbacks: null, errbacks: null, chain: null, chord: null };
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new ProtocolError('embed is not an object');
  const e = raw as Record<string, unknown>;
  return {
    callbacks: sigList(e.callbacks, 'callbacks'),
    errbacks: sigList(e.errbacks, 'errbacks'),
    chain: sigList(e.chain, 'chain'),
    chord: e.chord == null ? null : sig(e.chord, 'chord'),
  };
}

function sigList(v: unknown, name: string): SignatureDict[] | null {
  if (v === null || v === undefined) return null;
  if (!Array.isArray(v)) throw new ProtocolError(`embed.${name} is not a list`);
  return v.map((s, i) => sig(s, `${name}[${i}]`));
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** A signature dict: missing keys take Celery's defaults; a key of the wrong type is refused. */
function sig(v: unknown, name: string): SignatureDict {
  if (!isPlainObject(v)) throw new ProtocolError(`embed.${name} is not a signature`);
  const s = v;
  if (typeof s.task !== 'string' || s.task.length === 0) throw new ProtocolError(`embed.${name} has no task name`);
  const field = <T>(key: string, ok: (x: unknown) => x is T, fallback: T, expected: string): T => {
    const x = s[key];
    if (x === undefined || x === null) return fallback;
    if (!ok(x)) throw new ProtocolError(`embed.${name}.${key} is ${kindOf(x)}, expected ${expected}`);
    return x;
  };
  return {
    ...s,
    task: s.task,
    args: field('args', Array.isArray as (x: unknown) => x is JsonValue[], [], 'a list'),
    kwargs: field('kwargs', isPlainObject as (x: unknown) => x is Record<string, JsonValue>, {}, 'an object'),
    options: field('options', isPlainObject as (x: unknown) => x is Record<string, JsonValue>, {}, 'an object'),
    subtask_type: field('subtask_type', (x): x is string => typeof x === 'string', null as string | null, 'a string or null'),
    immutable: field('immutable', (x): x is boolean => typeof x === 'boolean', false, 'a boolean'),
  };
}

/** Type guard for a decoded v2 body. */
export function isTaskBody(v: unknown): v is TaskBody {
  return Array.isArray(v) && v.length === 3 && Array.isArray(v[0]) && v[1] !== null && typeof v[1] === 'object';
}
