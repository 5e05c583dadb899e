/**
 * Celery's monitoring events (celery.events, Celery 5.2.6) as records and
 * wire messages: pure values, checked field by field against the vectors in
 * test/fixtures/celery-5.2.6/events/ and amqp/events.json.
 *
 * An event is one flat JSON object: `hostname`, `utcoffset`, `pid`,
 * `clock` first (the sender's), then the type's own fields, then
 * `timestamp` (epoch seconds, a float) and `type`. Each goes to the
 * `celeryev` topic exchange with its type as routing key, `-` turned into
 * `.` (`worker.heartbeat`, `task.sent`); task events a worker buffers go out
 * as a JSON list under `<group>.multi` (`task.multi`). The message is JSON
 * (`application/json`, `utf-8`), header `hostname`, delivery mode 1
 * (transient), priority 0.
 */
import { redactAll } from '../config/redact.ts';
import type { WireMessage } from './types.ts';

/** Every event type Celeriac sends. */
export type WorkerEventType = 'worker-online' | 'worker-heartbeat' | 'worker-offline';
export type TaskEventType =
  | 'task-sent'
  | 'task-received'
  | 'task-started'
  | 'task-succeeded'
  | 'task-failed'
  | 'task-retried'
  | 'task-rejected'
  | 'task-revoked';
export type EventType = WorkerEventType | TaskEventType;

/** The fields every event starts with (Celery's `EventDispatcher.send`). */
export interface EventSender {
  /** Node name (`worker@host`; a client: `gen<pid>@<host>`). */
  hostname: string;
  pid: number;
  /** Hours to add to UTC, as Celery's `utcoffset()` computes them (see `utcOffsetHours`). */
  utcoffset: number;
}

/** One event as it goes on the wire: the common fields, the type's fields, `timestamp`, `type`. */
export type EventRecord = Record<string, unknown> & { type: EventType; clock: number; timestamp: number };

/** A worker's state as its heartbeat reports it (Celery's `Heart`). */
export interface WorkerStatus {
  /** Heartbeat interval, seconds (Celery's default 2.0). */
  freq: number;
  /** Tasks running now. */
  active: number;
  /** Tasks accepted since start. */
  processed: number;
  /** 1, 5 and 15 minute load averages, rounded up to hundredths (as Celery's `load_average`). */
  loadavg: readonly number[];
  /** Software: Celery sends `py-celery`, `5.2.6`, `Linux`. */
  sw_ident: string;
  sw_ver: string;
  sw_sys: string;
}

/** Fields of each task event, after `uuid` (Celery 5.2.6's names and order). */
export interface TaskEventFields {
  'task-sent': {
    root_id: string;
    parent_id: string | null;
    name: string;
    args: string;
    kwargs: string;
    retries: number;
    eta: string | null;
    expires: string | null;
    queue: string;
    exchange: string;
    routing_key: string;
  };
  'task-received': {
    name: string;
    args: string;
    kwargs: string;
    root_id: string;
    parent_id: string | null;
    retries: number;
    eta: string | null;
    expires: string | null;
  };
  'task-started': Record<string, never>;
  /** `result`: repr of the return value (at most 1024 characters, Celery's `resultrepr_maxsize`); `runtime`: seconds. */
  'task-succeeded': { result: string; runtime: number };
  /** `exception`: repr of the exception (`ValueError('bad value')`); `traceback`: text. */
  'task-failed': { exception: string; traceback: string };
  'task-retried': { exception: string; traceback: string };
  'task-rejected': { requeue: boolean };
  /** `signum`: the signal number when terminated, else null; `expired`: revoked because it expired. */
  'task-revoked': { terminated: boolean; signum: number | null; expired: boolean };
}

/** The longest `args`/`kwargs`/`result` text an event carries (Celery's `argsrepr_maxsize`, `kwargsrepr_maxsize`, `resultrepr_maxsize`). */
export const EVENT_REPR_MAX = 1024;
/** Celery's worker buffers task events up to this many before publishing (`buffer_limit`). */
export const EVENT_BUFFER_LIMIT = 24;
/** Celery's heartbeat interval, seconds (`Heart`'s default). */
export const HEARTBEAT_FREQ_S = 2.0;

/** The group of an event type: `task-sent` → `task` (Celery's `group_from`). */
export function eventGroup(type: string): string {
  const dash = type.indexOf('-');
  return dash === -1 ? type : type.slice(0, dash);
}

/** Routing key of a single event: its type with `-` as `.` (`worker-heartbeat` → `worker.heartbeat`). */
export function eventRoutingKey(type: string): string {
  return type.replaceAll('-', '.');
}

/** Routing key of a buffered batch of one group's events: `task.multi`. */
export function multiRoutingKey(group: string): string {
  return `${group}.multi`;
}

/**
 * Celery's `utcoffset()`: the local zone's offset to UTC in whole hours as
 * Python's `time.timezone // 3600` (seconds west of UTC, floored), so UTC+1
 * is -1 and UTC+5:30 is -6.
 */
export function utcOffsetHours(at: Date = new Date()): number {
  return Math.floor((at.getTimezoneOffset() * 60) / 3600);
}

/** Celery's `load_average()`: each value rounded up to hundredths. */
export function roundLoadavg(values: readonly number[]): number[] {
  return values.map((l) => Math.ceil(l * 100) / 100);
}

/** Build one event (Celery's `Event`): common fields first, then `fields`, then `timestamp` and `type`. */
export function buildEvent(type: EventType, sender: EventSender, clock: number, fields: object, timestampS: number): EventRecord {
  return { hostname: sender.hostname, utcoffset: sender.utcoffset, pid: sender.pid, clock, ...fields, timestamp: timestampS, type } as EventRecord;
}

/** `worker-online`, `worker-heartbeat` or `worker-offline`. */
export function workerEvent(type: WorkerEventType, sender: EventSender, clock: number, status: WorkerStatus, timestampS: number): EventRecord {
  const { freq, active, processed, loadavg, sw_ident, sw_ver, sw_sys } = status;
  return buildEvent(type, sender, clock, { freq, active, processed, loadavg: [...loadavg], sw_ident, sw_ver, sw_sys }, timestampS);
}

/** A task event: `uuid` first, then the type's fields (see `TaskEventFields`). */
export function taskEvent<T extends TaskEventType>(type: T, sender: EventSender, clock: number, uuid: string, fields: TaskEventFields[T], timestampS: number): EventRecord {
  return buildEvent(type, sender, clock, { uuid, ...fields }, timestampS);
}

/**
 * A repr as an event carries it: at most `EVENT_REPR_MAX` characters (then
 * `...`, as a cut repr ends) and with every secret masked (config/redact.ts):
 * the text is shown by monitors to whoever can read the event exchange.
 */
export function eventRepr(text: string, max = EVENT_REPR_MAX): string {
  const cut = text.length > max ? `${text.slice(0, max)}...` : text;
  return redactAll(cut);
}

/** Keys whose numbers Python sends as floats (`2.0`, not `2`); the receivers' types follow. */
const FLOAT_KEYS = new Set(['freq', 'runtime', 'timestamp', 'loadavg']);

function pyFloat(n: number): string {
  if (!Number.isFinite(n)) return 'null';
  return Number.isInteger(n) ? `${n}.0` : String(n);
}

/** `"key": ` for each key seen, so a key is escaped once per process, not once per event. */
const keyPrefix = new Map<string, string>();

/** `"key": value` of one field as Python's json.dumps writes it; '' for undefined (left out). */
function encodeField(key: string, v: unknown): string {
  if (v === undefined) return '';
  let text: string;
  if (typeof v === 'string') text = JSON.stringify(v);
  else if (typeof v === 'number') text = FLOAT_KEYS.has(key) ? pyFloat(v) : Number.isFinite(v) ? String(v) : 'null';
  else if (key === 'loadavg' && Array.isArray(v)) text = `[${v.map((x) => (typeof x === 'number' ? pyFloat(x) : JSON.stringify(x))).join(', ')}]`;
  else text = JSON.stringify(v) ?? 'null';
  let prefix = keyPrefix.get(key);
  if (prefix === undefined) {
    prefix = `${JSON.stringify(key)}: `;
    if (keyPrefix.size < 256) keyPrefix.set(key, prefix);
  }
  return prefix + text;
}

function encodeOne(event: Record<string, unknown>): string {
  let out = '{';
  for (const key in event) {
    const field = encodeField(key, event[key]);
    if (field === '') continue;
    out += out.length === 1 ? field : `, ${field}`;
  }
  return `${out}}`;
}

/** Keys `buildEvent` places itself: an event whose fields hold one is encoded through `buildEvent`. */
const COMMON_KEYS = new Set(['hostname', 'utcoffset', 'pid', 'clock', 'timestamp', 'type']);
/** `, "type": "<type>"}` per event type. */
const typeSuffix = new Map<string, string>();

/**
 * Writes events of one sender straight to their JSON text, the same text
 * `encodeEventBody(buildEvent(...))` gives, without building the event
 * object: the sender's fields are one precomputed prefix, each type's tail
 * is cached, and only `clock`, the fields and `timestamp` are written per
 * event (the task-event hot path of a worker with `-E`).
 */
export class EventEncoder {
  private head = '';
  private headOffset: number | undefined;

  constructor(private readonly sender: EventSender) {}

  /** One event's JSON text; `uuid`, when given, comes first among the fields (task events). */
  encode(type: EventType, clock: number, fields: object, timestampS: number, uuid?: string): string {
    const f = fields as Record<string, unknown>;
    for (const key in f) if (COMMON_KEYS.has(key)) return encodeOne(buildEvent(type, this.sender, clock, uuid === undefined ? f : { uuid, ...f }, timestampS) as unknown as Record<string, unknown>);
    if (this.headOffset !== this.sender.utcoffset) {
      // The offset changes with daylight saving: the prefix follows the sender's.
      const s = this.sender;
      this.head = `{${encodeField('hostname', s.hostname)}, ${encodeField('utcoffset', s.utcoffset)}, ${encodeField('pid', s.pid)}, "clock": `;
      this.headOffset = s.utcoffset;
    }
    let out = this.head + (Number.isFinite(clock) ? String(clock) : 'null');
    if (uuid !== undefined) out += `, "uuid": ${JSON.stringify(uuid)}`;
    for (const key in f) {
      if (uuid !== undefined && key === 'uuid') continue;
      const field = encodeField(key, f[key]);
      if (field !== '') out += `, ${field}`;
    }
    let tail = typeSuffix.get(type);
    if (tail === undefined) {
      tail = `, "type": ${JSON.stringify(type)}}`;
      if (typeSuffix.size < 256) typeSuffix.set(type, tail);
    }
    return `${out}, "timestamp": ${pyFloat(timestampS)}${tail}`;
  }
}

/** The message of events already encoded (`EventEncoder`): one event, or a batch as a list. */
export function eventMessageFromJson(hostname: string, json: string | readonly string[]): WireMessage {
  return {
    headers: { hostname },
    properties: { delivery_mode: 1, priority: 0 },
    contentType: 'application/json',
    contentEncoding: 'utf-8',
    body: Buffer.from(typeof json === 'string' ? json : `[${json.join(', ')}]`, 'utf8'),
  };
}

/**
 * The JSON text of one event or of a batch (a list), as Python's `json.dumps`
 * writes it: `, `/`: ` separators, floats with a decimal point.
 */
export function encodeEventBody(events: EventRecord | readonly EventRecord[]): string {
  if (!Array.isArray(events)) return encodeOne(events as EventRecord);
  return `[${(events as readonly EventRecord[]).map(encodeOne).join(', ')}]`;
}

/** The message of one event or batch, in Celery's event envelope. */
export function eventMessage(hostname: string, events: EventRecord | readonly EventRecord[]): WireMessage {
  return {
    headers: { hostname },
    properties: { delivery_mode: 1, priority: 0 },
    contentType: 'application/json',
    contentEncoding: 'utf-8',
    body: Buffer.from(encodeEventBody(events), 'utf8'),
  };
}
