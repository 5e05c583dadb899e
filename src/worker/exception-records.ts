/**
 * The one place that builds the exception records a worker stores (Celery's
 * `exc_type` / `exc_message` / `exc_module`), so Python clients read the
 * same exception names from every path that ends a task.
 */
import { redactValue } from '../config/redact.ts';
import { reprArgs, reprKwargs } from '../protocol/pyrepr.ts';
import type { ExceptionInfo } from '../protocol/result-meta.ts';

/** A task name no worker knows. */
export function notRegistered(task: string): ExceptionInfo {
  return { exc_type: 'NotRegistered', exc_message: [task], exc_module: 'celery.exceptions' };
}

/** A task revoked because its `expires` passed before it ran. */
export function expiredRevoked(): ExceptionInfo {
  return { exc_type: 'TaskRevokedError', exc_message: ['expired'], exc_module: 'celery.exceptions' };
}

/** A task revoked by remote control (`reason`: `revoked`, `terminated`). */
export function revokedRecord(reason: string): ExceptionInfo {
  return { exc_type: 'TaskRevokedError', exc_message: [reason], exc_module: 'celery.exceptions' };
}

/** Arguments that cannot be bound to the task (Python's TypeError). */
export function argumentTypeError(message: string): ExceptionInfo {
  return { exc_type: 'TypeError', exc_message: [message], exc_module: 'builtins' };
}

/** The hard time limit passed: `limit` is the limit in seconds, or a sentence. */
export function timeLimitExceeded(limit: number | string): ExceptionInfo {
  return { exc_type: 'TimeLimitExceeded', exc_message: [limit], exc_module: 'celery.exceptions' };
}

/** The process running the task died; `how` completes "Worker exited prematurely: …". */
export function workerLost(how: string): ExceptionInfo {
  return { exc_type: 'WorkerLostError', exc_message: [`Worker exited prematurely: ${how}`], exc_module: 'billiard.exceptions' };
}

/** A message whose results could not be settled too many times (Celeriac's own record). */
export function redeliveryLimitExceeded(reason: string): ExceptionInfo {
  return { exc_type: 'RedeliveryLimitExceeded', exc_message: [`task ${reason}; message dead-lettered`], exc_module: 'celeriac' };
}

/** A result the serializer cannot encode (as kombu reports it). */
export function encodeError(reason: string): ExceptionInfo {
  return { exc_type: 'EncodeError', exc_message: [reason], exc_module: 'kombu.exceptions' };
}

/** A retry asked for past the task's `maxRetries`, without an error of its own. */
export function maxRetriesExceeded(req: { task: string; id: string; args: readonly unknown[]; kwargs: Readonly<Record<string, unknown>> }): ExceptionInfo {
  return {
    exc_type: 'MaxRetriesExceededError',
    exc_message: [`Can't retry ${req.task}[${req.id}] args:${reprArgs(req.args)} kwargs:${reprKwargs(req.kwargs as Record<string, unknown>)}`],
    exc_module: 'celery.exceptions',
  };
}

/** The RETRY record of a retry asked for without an error. */
export function retryInFuture(): ExceptionInfo {
  return { exc_type: 'Retry', exc_message: ['Retry in the future'], exc_module: 'celery.exceptions' };
}

/**
 * An exception record as stored: URL credentials and known secrets in its
 * message and arguments masked (results outlive logs and are read by
 * anyone with access to the backend).
 */
export function redactException(exc: ExceptionInfo): ExceptionInfo {
  return { ...exc, exc_message: exc.exc_message.map((m) => redactValue(m)) };
}
