/**
 * Run one task function and describe what happened. Runs wherever the pool
 * puts it (a child process, or the worker process for the solo pool); never
 * throws, and never touches the broker or backend.
 */
import { errorToExceptionInfo, type ExceptionInfo } from '../protocol/result-meta.ts';
import type { TaskDefinition } from '../client/task.ts';
import { CeleriacError } from '../errors.ts';
import type { SignatureDict } from '../protocol/types.ts';
import { Replace, Retry, runWithContext, type AddToChordOptions, type ChordAddition, type RequestInfo, type RetryOptions, type SignatureLike, type TaskContext } from '../core/task-context.ts';
import { notRegistered } from './exception-records.ts';
import { checkProgressState } from './progress-state.ts';
import { canvasBuiltin } from './canvas/builtins.ts';
import { checkReplacement, signatureDictOf } from './canvas/replace.ts';

/** One execution handed to a pool. */
export interface ExecJob {
  /** Unique per execution (a task id can run again after a retry). */
  jobId: string;
  task: string;
  /** Arguments already bound (kwargs placed by name) and validated. */
  args: unknown[];
  /** Facts about the message (may be computed on first read). */
  readonly request: RequestInfo;
  /** Soft time limit in ms: the task's signal aborts then. */
  softTimeLimitMs?: number;
  /** Stores a progress state (progress.ts); absent where nothing can be stored. */
  updateState?(state: string, meta: unknown): Promise<boolean>;
  /** Adds a part to the task's chord (canvas/replace.ts); absent where nothing can be sent. */
  addToChord?(signature: SignatureDict, lazy: boolean): Promise<ChordAddition>;
}

/** How an execution ended. */
export type ExecOutcome =
  | { kind: 'success'; value: unknown; runtimeMs: number }
  | { kind: 'failure'; exc: ExceptionInfo; traceback: string | null; runtimeMs: number }
  | { kind: 'retry'; options: SerializableRetry; runtimeMs: number }
  /** The task called `replace()`: the worker sends `replacement` in its place (Celery's `Ignore`). */
  | { kind: 'replaced'; replacement: SignatureDict; runtimeMs: number }
  /** The process running it died (crash, out of memory, killed as collateral of a hard time limit). */
  | { kind: 'lost'; reason: string; runtimeMs: number }
  /** Killed at its hard time limit. */
  | { kind: 'timeout'; limitSeconds: number; runtimeMs: number };

/** `RetryOptions` with the error turned into a record, so it can cross processes. */
export interface SerializableRetry {
  countdown?: number;
  eta?: number;
  exc: ExceptionInfo | null;
  traceback: string | null;
  maxRetries?: number | null;
  /** True when produced by autoretryFor rather than an explicit retry(). */
  auto: boolean;
}

/** The SoftTimeLimitExceeded error set as the abort reason. */
export class SoftTimeLimitExceeded extends Error {
  override name = 'SoftTimeLimitExceeded';
  excModule = 'celery.exceptions';
  excArgs: unknown[] = [];
  constructor() {
    super('soft time limit exceeded');
  }
}

/**
 * A task's abort switch. The AbortController behind `signal` is made only
 * when someone asks for it (most tasks never do, and one per task shows in
 * profiles); aborting before that yields an already-aborted signal.
 */
export class TaskAbort {
  private controller: AbortController | undefined;
  private reason: unknown;
  private done = false;

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.done) this.controller.abort(this.reason);
    }
    return this.controller.signal;
  }

  abort(reason: unknown): void {
    if (this.done) return;
    this.done = true;
    this.reason = reason;
    this.controller?.abort(reason);
  }
}

/** True for anything `await` would treat as a promise. */
function isThenable(v: unknown): v is PromiseLike<unknown> {
  return v !== null && (typeof v === 'object' || typeof v === 'function') && typeof (v as { then?: unknown }).then === 'function';
}

/** The context a running task sees; `request` is built only when read (most tasks never do). */
class RunningTask implements TaskContext {
  constructor(
    private readonly job: ExecJob,
    private readonly controller: TaskAbort,
  ) {}

  get request(): RequestInfo {
    return this.job.request;
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  retry(options?: RetryOptions): never {
    throw new Retry(options);
  }

  updateState(state: string, meta?: unknown): Promise<boolean> {
    checkProgressState(state);
    return this.job.updateState ? this.job.updateState(state, meta ?? null) : Promise.resolve(false);
  }

  replace(signature: SignatureLike): never {
    this.checkRunning('replace');
    const d = signatureDictOf(signature, 'replace');
    // Checked here, so a bad replacement fails in the task's own stack, with its own traceback.
    checkReplacement(d);
    throw new Replace(d);
  }

  async addToChord(signature: SignatureLike, options: AddToChordOptions = {}): Promise<ChordAddition> {
    this.checkRunning('addToChord');
    const d = signatureDictOf(signature, 'addToChord');
    if (!this.job.addToChord) {
      throw new CeleriacError('ERR_NO_CHORD_JOIN', 'addToChord(): this worker keeps no results, so it has no chord join to add to', { hint: 'configure a Redis, SQLite or memory result backend' });
    }
    return this.job.addToChord(d, options.lazy === true);
  }

  /** A context kept past the task's end (stored in a closure, say) must not act for it any more. */
  private checkRunning(what: string): void {
    if (this.ended) {
      throw new CeleriacError('ERR_TASK_ENDED', `${what}() called after task ${this.job.task}[${this.job.request.id}] ended`, {
        hint: `call ${what}() while the task runs, and await it before the task function returns`,
      });
    }
  }

  /** Set once the task function has returned or thrown. */
  ended = false;
}

/**
 * Run a job against a registry. A task that returns a plain value (or
 * throws) yields its outcome at once, without a promise; a task that
 * returns a promise yields a promise of the outcome.
 */
export function executeJob(registry: ReadonlyMap<string, TaskDefinition>, job: ExecJob, abort?: TaskAbort): ExecOutcome | Promise<ExecOutcome> {
  const started = performance.now();
  const def = registry.get(job.task) ?? canvasBuiltin(job.task, registry);
  if (!def?.fn) {
    return { kind: 'failure', exc: notRegistered(job.task), traceback: null, runtimeMs: 0 };
  }
  const controller = abort ?? new TaskAbort();
  let softTimer: NodeJS.Timeout | undefined;
  if (job.softTimeLimitMs !== undefined) {
    softTimer = setTimeout(() => controller.abort(new SoftTimeLimitExceeded()), job.softTimeLimitMs);
  }
  let value: unknown;
  const ctx = new RunningTask(job, controller);
  try {
    value = runWithContext(ctx, def.fn, job.args);
  } catch (err) {
    ctx.ended = true;
    if (softTimer) clearTimeout(softTimer);
    return thrownOutcome(def, err, performance.now() - started);
  }
  if (!isThenable(value)) {
    ctx.ended = true;
    if (softTimer) clearTimeout(softTimer);
    return { kind: 'success', value, runtimeMs: performance.now() - started };
  }
  return settleAsync(def, ctx, value, started, softTimer);
}

async function settleAsync(def: TaskDefinition, ctx: RunningTask, pending: PromiseLike<unknown>, started: number, softTimer: NodeJS.Timeout | undefined): Promise<ExecOutcome> {
  try {
    const value = await pending;
    return { kind: 'success', value, runtimeMs: performance.now() - started };
  } catch (err) {
    return thrownOutcome(def, err, performance.now() - started);
  } finally {
    ctx.ended = true;
    if (softTimer) clearTimeout(softTimer);
  }
}

/** The outcome of a task that threw (or rejected): a retry, an automatic retry, or a failure. */
function thrownOutcome(def: TaskDefinition, err: unknown, runtimeMs: number): ExecOutcome {
  if (err instanceof Replace) return { kind: 'replaced', replacement: err.replacement, runtimeMs };
  if (err instanceof Retry) {
    const o = err.options;
    const exc = o.exc === undefined ? null : errorToExceptionInfo(o.exc);
    return {
      kind: 'retry',
      options: {
        countdown: o.countdown,
        eta: o.eta === undefined ? undefined : typeof o.eta === 'number' ? o.eta : o.eta.getTime(),
        exc,
        traceback: o.exc instanceof Error ? (o.exc.stack ?? null) : null,
        maxRetries: o.maxRetries,
        auto: false,
      },
      runtimeMs,
    };
  }
  const auto = def.options.autoretryFor;
  if (auto && (typeof auto === 'function' ? auto(err) : auto.some((cls) => err instanceof cls))) {
    return {
      kind: 'retry',
      options: { exc: errorToExceptionInfo(err), traceback: err instanceof Error ? (err.stack ?? null) : null, auto: true },
      runtimeMs,
    };
  }
  return {
    kind: 'failure',
    exc: errorToExceptionInfo(err),
    traceback: err instanceof Error ? (err.stack ?? null) : null,
    runtimeMs,
  };
}
