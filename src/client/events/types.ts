/**
 * Typed Celery events as a receiver yields them: Celery's field names, as
 * Celery 5.2.6 workers and clients send them (test/fixtures/celery-5.2.6/events),
 * plus `local_received` (when this process received it, epoch seconds, as
 * Celery's own receiver adds it). Fields a sender left out are absent; a
 * field that is present has been checked to have the type written here.
 */

/** Fields every event carries. */
export interface EventBase {
  type: string;
  /** Node name of the sender (`worker@host`, or the client's `gen<pid>@host`). */
  hostname: string;
  /** When it was sent, epoch seconds (the sender's clock). */
  timestamp: number;
  /** When this receiver got it, epoch seconds. */
  local_received: number;
  /** Sender's UTC offset, hours. */
  utcoffset?: number;
  pid?: number;
  /** Sender's Lamport clock. */
  clock?: number;
  /** Any other field the sender added (already checked to be plain, bounded data). */
  [extra: string]: unknown;
}

/** `worker-online`, `worker-heartbeat`, `worker-offline`. */
export interface WorkerEvent extends EventBase {
  type: 'worker-online' | 'worker-heartbeat' | 'worker-offline';
  /** Heartbeat interval, seconds. */
  freq?: number;
  /** Tasks running now. */
  active?: number;
  /** Tasks processed since start. */
  processed?: number;
  loadavg?: number[] | null;
  sw_ident?: string;
  sw_ver?: string;
  sw_sys?: string;
}

interface TaskEventBase extends EventBase {
  uuid: string;
}

/** `task-sent` (from the client) and `task-received` (from the worker). */
export interface TaskSentEvent extends TaskEventBase {
  type: 'task-sent' | 'task-received';
  name?: string;
  /** Python repr of the arguments (truncated by the sender). */
  args?: string;
  kwargs?: string;
  retries?: number;
  eta?: string | null;
  expires?: string | null;
  root_id?: string | null;
  parent_id?: string | null;
  /** `task-sent` only. */
  queue?: string;
  exchange?: string;
  routing_key?: string;
}

export interface TaskStartedEvent extends TaskEventBase {
  type: 'task-started';
}

export interface TaskSucceededEvent extends TaskEventBase {
  type: 'task-succeeded';
  /** Python repr of the result (truncated by the sender). */
  result?: string;
  /** Seconds. */
  runtime?: number;
}

/** `task-failed` and `task-retried`. */
export interface TaskFailedEvent extends TaskEventBase {
  type: 'task-failed' | 'task-retried';
  exception?: string;
  traceback?: string;
}

export interface TaskRejectedEvent extends TaskEventBase {
  type: 'task-rejected';
  requeue?: boolean;
}

export interface TaskRevokedEvent extends TaskEventBase {
  type: 'task-revoked';
  terminated?: boolean;
  signum?: number | string | null;
  expired?: boolean;
}

export type TaskEvent = TaskSentEvent | TaskStartedEvent | TaskSucceededEvent | TaskFailedEvent | TaskRejectedEvent | TaskRevokedEvent;

/** An event of a type this receiver knows. */
export type KnownEvent = WorkerEvent | TaskEvent;

/** An event of any other type (custom events, newer Celery versions): the base fields checked, the rest passed through. */
export interface GenericEvent extends EventBase {
  type: string;
}

/**
 * What a receiver yields. Narrow with `isKnownEvent` first, then switch on
 * `type` (a `GenericEvent`'s `type` is any string, so a plain switch keeps
 * it in every branch).
 */
export type CeleryEvent = KnownEvent | GenericEvent;

export const WORKER_EVENT_TYPES = ['worker-online', 'worker-heartbeat', 'worker-offline'] as const;
export const TASK_EVENT_TYPES = ['task-sent', 'task-received', 'task-started', 'task-succeeded', 'task-failed', 'task-retried', 'task-rejected', 'task-revoked'] as const;

const WORKER_TYPES: ReadonlySet<string> = new Set(WORKER_EVENT_TYPES);
const TASK_TYPES: ReadonlySet<string> = new Set(TASK_EVENT_TYPES);

/** True for the eleven event types above. */
export function isKnownEvent(event: CeleryEvent): event is KnownEvent {
  return WORKER_TYPES.has(event.type) || TASK_TYPES.has(event.type);
}

export function isWorkerEvent(event: CeleryEvent): event is WorkerEvent {
  return WORKER_TYPES.has(event.type);
}

export function isTaskEvent(event: CeleryEvent): event is TaskEvent {
  return TASK_TYPES.has(event.type);
}
