/**
 * AsyncResult: a handle on a task's result, readable by id from any process
 * (and from Python: the record format is Celery's).
 */
import type { Tracing } from '../observability/tracing/index.ts';
import type { ResultStore, WaitOptions } from './results.ts';
import type { Control, ControlReply, RevokeOptions } from './control.ts';
import { ConfigError } from '../errors.ts';
import { PROPAGATE_STATES, READY_STATES, remoteErrorFromMeta, type ResultMeta, type TaskState } from '../protocol/result-meta.ts';

export interface GetOptions extends WaitOptions {
  /** Throw `RemoteTaskError` for FAILURE and REVOKED (default true); false returns the error record. */
  propagate?: boolean;
}

/** Tracing of `AsyncResult.get` (observability/tracing). */
export interface ResultTrace {
  tracing: () => Tracing | undefined;
  task?: string | undefined;
}

/** A task's result. `R` is the task's return type. */
export class AsyncResult<R = unknown> {
  readonly id: string;
  private readonly store: ResultStore | undefined;
  private readonly control: (() => Control) | undefined;
  /** OpenTelemetry hooks when `telemetryTracing` is on (a `result` span around `get`), and the task's name when known. */
  private readonly trace: ResultTrace | undefined;

  constructor(id: string, store: ResultStore | undefined, control?: () => Control, trace?: ResultTrace) {
    this.id = id;
    this.store = store;
    this.control = control;
    this.trace = trace;
  }

  /**
   * Ask every worker not to run this task (and with `terminate`, to stop it
   * if it is running): Celery's `revoke` broadcast. Resolves with the
   * replies when `reply: true`.
   */
  revoke(options: RevokeOptions = {}): Promise<ControlReply[]> {
    if (!this.control) return Promise.reject(new ConfigError('this result handle has no app to send a revoke through', { hint: 'use app.asyncResult(id).revoke() or app.control.revoke(id)' }));
    return this.control().revoke(this.id, options);
  }

  private need(): ResultStore {
    if (!this.store) {
      throw new ConfigError('this app has no result backend', { hint: 'set resultBackend (or CELERIAC_RESULT_BACKEND) to read results' });
    }
    return this.store;
  }

  /**
   * Wait for the task to finish and return its value. Rejects with
   * `RemoteTaskError` when it failed or was revoked, and `TimeoutError`
   * when `timeoutMs` passes first.
   */
  async get(options: GetOptions = {}): Promise<R> {
    const tracing = this.trace?.tracing();
    if (tracing) return tracing.result(this.id, this.trace?.task, () => this.wait(options));
    return this.wait(options);
  }

  private async wait(options: GetOptions): Promise<R> {
    const meta = await this.need().wait(this.id, options);
    if (PROPAGATE_STATES.has(meta.status) && options.propagate !== false) throw remoteErrorFromMeta(meta);
    return meta.result as R;
  }

  /** The stored meta dict (PENDING when there is none). */
  async meta(): Promise<ResultMeta> {
    return this.need().get(this.id);
  }

  /**
   * What the current record carries (Celery's `AsyncResult.info`): the meta
   * of a custom state such as PROGRESS while the task runs, `{ pid,
   * hostname }` when STARTED, the value once SUCCESS, the exception record
   * of a FAILURE or RETRY; null while PENDING.
   */
  async info(): Promise<unknown> {
    return (await this.meta()).result;
  }

  /** The task's state: PENDING, STARTED, RETRY, FAILURE, SUCCESS, REVOKED or a custom state. */
  async status(): Promise<TaskState> {
    return (await this.meta()).status;
  }

  /** True once the task succeeded, failed or was revoked. */
  async ready(): Promise<boolean> {
    return READY_STATES.has((await this.meta()).status);
  }

  /** True once the task succeeded. */
  async successful(): Promise<boolean> {
    return (await this.meta()).status === 'SUCCESS';
  }

  /** Delete the stored result. */
  async forget(): Promise<void> {
    await this.need().forget(this.id);
  }

  toString(): string {
    return this.id;
  }
}
