/**
 * Results of many tasks at once: `ResultSet` (any results) and
 * `GroupResult` (a group's, with its id), as Celery has them. A saved group
 * is Celery's `celery-taskset-meta-<id>` record, `{"result": [[id, null],
 * [[[task id, null], null], …]]}`, readable by `GroupResult.restore` on
 * either side.
 */
import { ConfigError, DecodeError, TimeoutError } from '../../errors.ts';
import { PROPAGATE_STATES, READY_STATES, remoteErrorFromMeta, type ResultMeta } from '../../protocol/result-meta.ts';
import { AsyncResult } from '../result.ts';
import type { ResultStore, WaitOptions } from '../results.ts';

/** Options of `join` and `get`. */
export interface JoinOptions extends WaitOptions {
  /** Throw `RemoteTaskError` for the first FAILURE or REVOKED, in order (default true); false puts the error record in its place. */
  propagate?: boolean;
}

/** Results of many tasks, read together. */
export class ResultSet<R extends readonly unknown[] = unknown[]> {
  readonly results: readonly AsyncResult[];
  protected readonly store: ResultStore | undefined;

  constructor(results: readonly AsyncResult[], store: ResultStore | undefined) {
    this.results = results;
    this.store = store;
  }

  protected need(): ResultStore {
    if (!this.store) throw new ConfigError('this app has no result backend', { hint: 'set resultBackend (or CELERIAC_RESULT_BACKEND) to read results' });
    return this.store;
  }

  private async metas(): Promise<ResultMeta[]> {
    const store = this.need();
    const ids = this.results.map((r) => r.id);
    const payloads = await store.backend.getMany(ids);
    return payloads.map((p, i) => (p ? store.decode(p, ids[i]!) : { status: 'PENDING', result: null, traceback: null, children: [], date_done: null, task_id: ids[i]! }));
  }

  /** How many tasks succeeded (Celery's `completed_count`). */
  async completedCount(): Promise<number> {
    return (await this.metas()).filter((m) => m.status === 'SUCCESS').length;
  }

  /** True once every task is ready (succeeded, failed or revoked). */
  async ready(): Promise<boolean> {
    return (await this.metas()).every((m) => READY_STATES.has(m.status));
  }

  /** True once every task succeeded. */
  async successful(): Promise<boolean> {
    return (await this.metas()).every((m) => m.status === 'SUCCESS');
  }

  /** True when any task failed. */
  async failed(): Promise<boolean> {
    return (await this.metas()).some((m) => m.status === 'FAILURE');
  }

  /**
   * Wait for every task and return their results in order (Celery's
   * `join`). The timeout covers the whole wait.
   */
  async join(options: JoinOptions = {}): Promise<R> {
    const store = this.need();
    const deadline = options.timeoutMs === undefined ? undefined : Date.now() + options.timeoutMs;
    const out: unknown[] = [];
    for (const r of this.results) {
      const left = deadline === undefined ? undefined : deadline - Date.now();
      if (left !== undefined && left <= 0) throw new TimeoutError(`the group's results were not all ready within ${options.timeoutMs} ms`, { hint: 'raise timeoutMs, or check that workers consume the queues' });
      const meta = await store.wait(r.id, { ...(left !== undefined ? { timeoutMs: left } : {}), ...(options.signal ? { signal: options.signal } : {}) });
      if (PROPAGATE_STATES.has(meta.status) && options.propagate !== false) throw remoteErrorFromMeta(meta);
      out.push(meta.result);
    }
    return out as unknown as R;
  }

  /** Same as {@link join}. */
  get(options: JoinOptions = {}): Promise<R> {
    return this.join(options);
  }
}

/** A group's results, under the group's id. */
export class GroupResult<R extends readonly unknown[] = unknown[]> extends ResultSet<R> {
  readonly id: string;

  constructor(id: string, results: readonly AsyncResult[], store: ResultStore | undefined) {
    super(results, store);
    this.id = id;
  }

  /** Celery's `as_tuple()`: `[[id, null], [[[task id, null], null], …]]`. */
  asTuple(): unknown[] {
    return [[this.id, null], this.results.map((r) => [[r.id, null], null])];
  }

  /** Store the group (Celery's `GroupResult.save()`), so any process can restore it by id. */
  async save(): Promise<void> {
    const store = this.need();
    if (!store.backend.saveGroup) throw new ConfigError(`the ${store.backend.kind} result backend cannot save groups`, { hint: 'use a Redis, SQLite or memory result backend' });
    await store.backend.saveGroup(this.id, store.encodeValue({ result: this.asTuple() }, `celery-taskset-meta-${this.id}`), { expiresSeconds: store.expires });
  }

  /** Delete the saved group (the tasks' results stay). */
  async delete(): Promise<void> {
    await this.need().backend.forgetGroup?.(this.id);
  }

  /** Read a saved group (Celery's `GroupResult.restore(id)`); undefined when none is saved. */
  static async restore(store: ResultStore, groupId: string): Promise<GroupResult | undefined> {
    const payload = await store.backend.getGroup?.(groupId);
    if (!payload) return undefined;
    const decoded = store.decodeValue(payload, `celery-taskset-meta-${groupId}`) as { result?: unknown };
    const tuple = decoded?.result;
    const members = Array.isArray(tuple) && Array.isArray(tuple[1]) ? (tuple[1] as unknown[]) : undefined;
    if (!members) throw new DecodeError(`saved group ${groupId} is not Celery's {"result": [[id, parent], [...]]}`, { code: 'ERR_RESULT' });
    const ids = members.map((m) => (Array.isArray(m) && Array.isArray(m[0]) && typeof m[0][0] === 'string' ? (m[0][0] as string) : undefined));
    if (ids.some((id) => id === undefined)) throw new DecodeError(`saved group ${groupId} holds a member that is not a result tuple`, { code: 'ERR_RESULT' });
    return new GroupResult(groupId, ids.map((id) => new AsyncResult(id!, store)), store);
  }
}
