/**
 * Run one task function and describe what happened. Runs wherever the pool
 * puts it (a child process, or the worker process for the solo pool); never
 * throws, and never touches the broker or backend.
 */
import { errorToExceptionInfo, type ExceptionInfo } from '../protocol/result-meta.ts';
import type { TaskDefinition } from '../task.ts';
import { Retry, runWithContext, type RequestInfo, type RetryOptions, type TaskContext } from './context.ts';

/** One execution handed to a pool. Everything in it is structured-clone safe. */
export interface ExecJob {
  /** Unique per execution (a task id can run again after a retry). */
  jobId: string;
  task: string;
  /** Arguments already bound (kwargs placed by name) and validated. */
  args: unknown[];
  request: RequestInfo;
  /** Soft time limit in ms: the task's signal aborts then. */
  softTimeLimitMs?: number;
}

/** How an execution ended. */
export type ExecOutcome =
  | { kind: 'success'; value: unknown; runtimeMs: number }
  | { kind: 'failure'; exc: ExceptionInfo; traceback: string | null; runtimeMs: number }
  | { kind: 'retry'; options: SerializableRetry; runtimeMs: number }
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

/** Run a job against a registry; resolves with its outcome. */
export async function executeJob(registry: ReadonlyMap<string, TaskDefinition>, job: ExecJob, abort?: TaskAbort): Promise<ExecOutcome> {
  const started = performance.now();
  const runtime = (): number => performance.now() - started;
  const def = registry.get(job.task);
  if (!def?.fn) {
    return {
      kind: 'failure',
      exc: { exc_type: 'NotRegistered', exc_message: [job.task], exc_module: 'celery.exceptions' },
      traceback: null,
      runtimeMs: 0,
    };
  }
  const controller = abort ?? new TaskAbort();
  let softTimer: NodeJS.Timeout | undefined;
  if (job.softTimeLimitMs !== undefined) {
    softTimer = setTimeout(() => controller.abort(new SoftTimeLimitExceeded()), job.softTimeLimitMs);
  }
  const ctx: TaskContext = {
    request: job.request,
    get signal() {
      return controller.signal;
    },
    retry(options?: RetryOptions): never {
      throw new Retry(options);
    },
  };
  const fn = def.fn;
  try {
    const value = await runWithContext(ctx, () => fn(...job.args));
    return { kind: 'success', value, runtimeMs: runtime() };
  } catch (err) {
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
        runtimeMs: runtime(),
      };
    }
    const auto = def.options.autoretryFor;
    if (auto && (typeof auto === 'function' ? auto(err) : auto.some((cls) => err instanceof cls))) {
      return {
        kind: 'retry',
        options: { exc: errorToExceptionInfo(err), traceback: err instanceof Error ? (err.stack ?? null) : null, auto: true },
        runtimeMs: runtime(),
      };
    }
    return {
      kind: 'failure',
      exc: errorToExceptionInfo(err),
      traceback: err instanceof Error ? (err.stack ?? null) : null,
      runtimeMs: runtime(),
    };
  } finally {
    if (softTimer) clearTimeout(softTimer);
  }
}
