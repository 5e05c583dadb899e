/**
 * The running task's context, as task code imports it from the worker.
 * It lives in core/task-context.ts, where the client (parent and root ids
 * of messages sent from inside a task) reads it too.
 */
export { currentTask, maybeCurrentTask, Replace, Retry, runWithContext, type AddToChordOptions, type ChordAddition, type RequestInfo, type RetryOptions, type SignatureLike, type TaskContext } from '../core/task-context.ts';
