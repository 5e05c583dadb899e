/**
 * The running task's context, reachable from anywhere in the task's async
 * call tree through `currentTask()` (AsyncLocalStorage), in the worker's
 * child processes and in the solo pool alike.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { CeleriacError } from '../errors.ts';
import type { SignatureDict } from '../protocol/types.ts';

/** Facts about the message being executed (Celery's `task.request`). */
export interface RequestInfo {
  id: string;
  task: string;
  retries: number;
  /** Epoch ms or null. */
  eta: number | null;
  /** Epoch ms or null. */
  expires: number | null;
  rootId: string;
  parentId: string | null;
  group: string | null;
  groupIndex: number | null;
  origin: string | null;
  correlationId: string;
  replyTo: string;
  /** Node name of the worker running the task. */
  hostname: string;
  deliveryInfo: { queue: string; priority: number; redelivered: boolean };
  timeLimit: [number | null, number | null];
  args: unknown[];
  kwargs: Record<string, unknown>;
  /** The message's headers as received: the standard ones and any sent with the `headers` option (Python: `self.request.<name>`). */
  headers: Readonly<Record<string, unknown>>;
}

/** Options of `retry()`; durations in seconds. */
export interface RetryOptions {
  /** Seconds until the retry runs (default: the task's backoff or defaultRetryDelay). */
  countdown?: number;
  /** Run the retry at this time instead. */
  eta?: Date | number;
  /** The error that caused the retry (stored with the RETRY state and raised when retries run out). */
  exc?: unknown;
  /** Override the task's maxRetries for this decision. */
  maxRetries?: number | null;
}

/** Thrown by `retry()`; the worker turns it into a RETRY and a re-sent message. */
export class Retry extends CeleriacError {
  readonly options: RetryOptions;
  constructor(options: RetryOptions = {}) {
    super('ERR_RETRY', 'task asked to be retried');
    this.options = options;
  }
}

/**
 * What `replace()` and `addToChord()` take: a canvas value (a `Signature`,
 * `Chain`, `Group` or `Chord`: anything with Celery's `toDict()`), or a
 * signature dict as Celery puts it on the wire (one a Python client passed
 * as an argument, say).
 */
export type SignatureLike = { toDict(): SignatureDict } | SignatureDict;

/**
 * Thrown by `replace()`; the worker sends the replacement and ends the task
 * as Celery's `Ignore` does (nothing stored under the task's id until the
 * replacement's result lands there). Do not catch it.
 */
export class Replace extends CeleriacError {
  /** The replacement, as a signature dict. */
  readonly replacement: SignatureDict;
  constructor(replacement: SignatureDict) {
    super('ERR_REPLACE', 'Replaced by new task');
    this.replacement = replacement;
  }
}

/** Options of `addToChord()`. */
export interface AddToChordOptions {
  /**
   * Count the new part but do not send it (Celery's `lazy=True`): the
   * caller sends `signature` itself, e.g. `fromDict(added.signature).applyAsync(app)`.
   */
  lazy?: boolean;
}

/** What `addToChord()` added: the new part's task id and its signature (membership and id set). */
export interface ChordAddition {
  id: string;
  signature: SignatureDict;
}

/** What a running task can see and do. */
export interface TaskContext {
  readonly request: RequestInfo;
  /** Aborted when the soft time limit passes, or when the task is revoked with terminate. */
  readonly signal: AbortSignal;
  /** Ask to be run again later; never returns (throws `Retry`). */
  retry(options?: RetryOptions): never;
  /**
   * Store a state for this task while it runs, as Celery's
   * `Task.update_state` does: a custom state such as `'PROGRESS'` with a
   * meta object (`{ current: 3, total: 10 }`), which any client (Python's
   * `AsyncResult.state` / `.info` included) reads until the task ends.
   * Resolves `true` once stored, `false` when nothing was stored: the
   * worker has no result backend, the message named no reply queue
   * (`rpc://`), or the store failed (logged; the promise never rejects, so
   * an update left un-awaited cannot crash the worker). A state that is
   * not a non-empty string of at most 64 characters, or a ready state
   * (`SUCCESS`, `FAILURE`, `REVOKED`), throws `ValidationError` at once:
   * return a value or throw instead. The worker stores the task's final
   * state only after every update begun before it has been written.
   */
  updateState(state: string, meta?: unknown): Promise<boolean>;
  /**
   * Replace the rest of this task with `signature` (Celery's
   * `Task.replace`); never returns (throws `Replace`, which the worker
   * handles: do not catch it). The replacement takes over this task's id
   * (a chain's or chord's final task gets it), so whoever waits on this
   * task gets the replacement's final result; this task's callbacks and
   * errbacks, its chord membership and the rest of its chain move to the
   * replacement. A group is run as a chord whose body collects its results
   * (Celery's `celery.accumulate`). Nothing is stored for this task itself
   * (Celery's `Ignore`). Throws `ValidationError` at once for a value that
   * is not a signature, an empty chain, or a signature that already names
   * a chord.
   */
  replace(signature: SignatureLike): never;
  /**
   * Add `signature` to the chord this task is a header part of (Celery's
   * `Task.add_to_chord`): the chord's body then waits for it too, and gets
   * its result in the list. The join's count goes up first (Redis: Celery's
   * `.t` key, so Python workers count it too), then the part is sent
   * unless `lazy`. Rejects with `ValidationError` when this task is not a
   * chord header part or `signature` is not a task or chain, and with
   * `ConfigError` when the result backend has no chord join.
   */
  addToChord(signature: SignatureLike, options?: AddToChordOptions): Promise<ChordAddition>;
}

const storage = new AsyncLocalStorage<TaskContext>();

/** Call `fn(...args)` with `ctx` as the current task context. */
export function runWithContext<T>(ctx: TaskContext, fn: (...args: unknown[]) => T, args: readonly unknown[] = []): T {
  return storage.run(ctx, fn, ...args);
}

/** The context of the task being executed; throws outside a task. */
export function currentTask(): TaskContext {
  const ctx = storage.getStore();
  if (!ctx) throw new CeleriacError('ERR_NO_TASK', 'currentTask() called outside a running task', { hint: 'call it from inside a task function' });
  return ctx;
}

/** The current context or undefined (used by the client to set parent/root ids). */
export function maybeCurrentTask(): TaskContext | undefined {
  return storage.getStore();
}
