/**
 * Celery result records (`celery-task-meta-<id>`): states, the meta dict in
 * Celery's field order, and exception records that cross languages without
 * ever resolving a type by name.
 */
import { DecodeError, RemoteTaskError } from '../errors.ts';
import { toNaiveIsoUtc } from './time.ts';

export const States = {
  PENDING: 'PENDING',
  RECEIVED: 'RECEIVED',
  STARTED: 'STARTED',
  RETRY: 'RETRY',
  FAILURE: 'FAILURE',
  SUCCESS: 'SUCCESS',
  REVOKED: 'REVOKED',
} as const;

/** A Celery task state; custom states are plain strings. */
export type TaskState = (typeof States)[keyof typeof States] | (string & {});

export const READY_STATES: ReadonlySet<string> = new Set(['SUCCESS', 'FAILURE', 'REVOKED']);
export const EXCEPTION_STATES: ReadonlySet<string> = new Set(['RETRY', 'FAILURE', 'REVOKED']);
export const PROPAGATE_STATES: ReadonlySet<string> = new Set(['FAILURE', 'REVOKED']);

/** Celery's exception record. */
export interface ExceptionInfo {
  exc_type: string;
  exc_message: unknown[];
  exc_module: string | null;
}

/** Fields added with `resultExtended`. */
export interface ExtendedFields {
  name: string;
  args: unknown[];
  kwargs: Record<string, unknown>;
  worker: string;
  retries: number;
  queue: string;
}

/** The stored meta dict. Optional keys are absent (not null) when unset, as in Celery. */
export interface ResultMeta {
  status: TaskState;
  result: unknown;
  traceback: string | null;
  children: unknown[];
  date_done: string | null;
  group_id?: string;
  parent_id?: string;
  name?: string;
  args?: unknown[];
  kwargs?: Record<string, unknown>;
  worker?: string;
  retries?: number;
  queue?: string;
  task_id: string;
  [extra: string]: unknown;
}

export interface ResultMetaInput {
  taskId: string;
  status: TaskState;
  result: unknown;
  traceback?: string | null;
  children?: unknown[];
  /** Epoch ms; defaults to now for ready states, null otherwise. */
  dateDone?: number | null;
  groupId?: string | null;
  parentId?: string | null;
  extended?: ExtendedFields;
}

/** Build a meta dict with Celery 5.2.6's field order and date format. */
export function buildResultMeta(input: ResultMetaInput, now: number = Date.now()): ResultMeta {
  const ready = READY_STATES.has(input.status);
  const dateDone = input.dateDone === undefined ? (ready ? now : null) : input.dateDone;
  const meta: ResultMeta = {
    status: input.status,
    result: input.result,
    traceback: input.traceback ?? null,
    children: input.children ?? [],
    date_done: dateDone === null ? null : toNaiveIsoUtc(dateDone),
  } as ResultMeta;
  if (input.groupId) meta.group_id = input.groupId;
  if (input.parentId) meta.parent_id = input.parentId;
  if (input.extended) {
    meta.name = input.extended.name;
    meta.args = input.extended.args;
    meta.kwargs = input.extended.kwargs;
    meta.worker = input.extended.worker;
    meta.retries = input.extended.retries;
    meta.queue = input.extended.queue;
  }
  meta.task_id = input.taskId;
  return meta;
}

/** Python builtin exception names a JS error may carry and Python will resolve. */
const PY_BUILTINS = new Set([
  'Exception', 'ValueError', 'TypeError', 'KeyError', 'IndexError', 'RuntimeError', 'ZeroDivisionError',
  'NotImplementedError', 'AttributeError', 'LookupError', 'ArithmeticError', 'OverflowError', 'PermissionError',
  'FileNotFoundError', 'TimeoutError', 'OSError', 'AssertionError', 'ConnectionError', 'MemoryError',
]);

const PY_CELERY = new Set([
  'TaskRevokedError', 'NotRegistered', 'MaxRetriesExceededError', 'TimeLimitExceeded', 'SoftTimeLimitExceeded',
  'WorkerLostError', 'ChordError', 'Retry', 'Reject', 'Ignore', 'TaskError', 'QueueNotFound',
]);

const SAFE_NAME = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/;

/**
 * Turn a thrown value into Celery's exception record. The type name is the
 * error's `name` when it is a plain identifier; `excModule` and `excArgs`
 * properties on the error, when present, override the defaults.
 */
export function errorToExceptionInfo(err: unknown): ExceptionInfo {
  if (err instanceof Error) {
    const e = err as Error & { excModule?: unknown; excArgs?: unknown; excType?: unknown };
    const rawName = typeof e.excType === 'string' ? e.excType : e.name;
    const type = SAFE_NAME.test(rawName) && rawName.length <= 128 ? rawName : 'Error';
    const module =
      typeof e.excModule === 'string' ? e.excModule : PY_CELERY.has(type) ? 'celery.exceptions' : 'builtins';
    const args = Array.isArray(e.excArgs) ? e.excArgs : [e.message];
    return { exc_type: type, exc_message: args, exc_module: module };
  }
  return { exc_type: 'Exception', exc_message: [String(err)], exc_module: 'builtins' };
}

/** True when the value has the shape of an exception record. */
export function isExceptionInfo(v: unknown): v is ExceptionInfo {
  return v !== null && typeof v === 'object' && typeof (v as { exc_type?: unknown }).exc_type === 'string';
}

/**
 * Build the typed error for a FAILURE/REVOKED/RETRY record. Only strings
 * are read from the record; nothing is looked up or executed.
 */
export function remoteErrorFromMeta(meta: ResultMeta): RemoteTaskError {
  const r = meta.result;
  let excType = 'Exception';
  let excModule: string | null = null;
  let excMessage: unknown[] = [];
  if (isExceptionInfo(r)) {
    excType = r.exc_type;
    excModule = typeof r.exc_module === 'string' ? r.exc_module : null;
    const m = (r as { exc_message?: unknown }).exc_message;
    excMessage = Array.isArray(m) ? m : m === undefined || m === null ? [] : [m];
  } else if (r !== null && r !== undefined) {
    excMessage = [r];
  }
  return new RemoteTaskError({
    taskId: meta.task_id,
    excType,
    excModule,
    excMessage,
    traceback: typeof meta.traceback === 'string' ? meta.traceback : null,
    state: String(meta.status),
  });
}

/** Validate a decoded record's shape; throws `DecodeError` when it is not a meta dict. */
export function parseResultMeta(value: unknown, expectedTaskId?: string): ResultMeta {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new DecodeError('result record is not an object', { code: 'ERR_RESULT' });
  const v = value as Record<string, unknown>;
  if (typeof v.status !== 'string') throw new DecodeError('result record has no status', { code: 'ERR_RESULT' });
  const taskId = typeof v.task_id === 'string' ? v.task_id : expectedTaskId;
  if (typeof taskId !== 'string') throw new DecodeError('result record has no task_id', { code: 'ERR_RESULT' });
  if (expectedTaskId !== undefined && taskId !== expectedTaskId) {
    throw new DecodeError(`result record belongs to task ${taskId}, not ${expectedTaskId}`, { code: 'ERR_RESULT' });
  }
  return {
    ...v,
    status: v.status,
    result: v.result ?? null,
    traceback: typeof v.traceback === 'string' ? v.traceback : null,
    children: Array.isArray(v.children) ? v.children : [],
    date_done: typeof v.date_done === 'string' ? v.date_done : null,
    task_id: taskId,
  };
}

/** A pending meta, as Celery reports a task it knows nothing about. */
export function pendingMeta(taskId: string): ResultMeta {
  return { status: 'PENDING', result: null, traceback: null, children: [], date_done: null, task_id: taskId };
}
