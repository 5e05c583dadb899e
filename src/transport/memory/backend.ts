/**
 * In-memory result backend for unit tests in one process. Not for
 * production: records vanish with the process.
 */
import type { ExpiringIdSet } from '../../core/backend.ts';
import { memoryExpiringIdSet } from './expiring-set.ts';
import { ClosedError } from '../../errors.ts';
import type { ResultBackend, StoredRecord, StoreOptions } from '../../core/backend.ts';

interface Entry {
  payload: Buffer;
  state: string;
  expiresAt: number | undefined;
}

/** Create an in-memory result backend. */
export function createMemoryBackend(): MemoryBackend {
  return new MemoryBackend();
}

export class MemoryBackend implements ResultBackend {
  readonly kind = 'memory';
  private readonly records = new Map<string, Entry>();
  private readonly idSets = new Map<string, Map<string, number>>();

  expiringIdSet(name: string): ExpiringIdSet {
    let ids = this.idSets.get(name);
    if (!ids) this.idSets.set(name, (ids = new Map()));
    return memoryExpiringIdSet(ids);
  }
  private readonly watchers = new Map<string, Set<(p: Buffer) => void>>();
  private closed = false;

  async connect(): Promise<void> {
    if (this.closed) throw new ClosedError('memory backend');
  }

  async store(records: readonly StoredRecord[], options?: StoreOptions): Promise<void> {
    if (this.closed) throw new ClosedError('memory backend');
    const expiresAt = options?.expiresSeconds ? Date.now() + options.expiresSeconds * 1000 : undefined;
    for (const r of records) {
      // By the state handed in, never the payload (which may be sealed).
      if (this.live(r.taskId)?.state === 'SUCCESS') continue;
      this.records.set(r.taskId, { payload: Buffer.from(r.payload), state: r.state, expiresAt });
      for (const w of this.watchers.get(r.taskId) ?? []) w(Buffer.from(r.payload));
    }
  }

  private live(taskId: string): Entry | undefined {
    const e = this.records.get(taskId);
    if (e?.expiresAt !== undefined && e.expiresAt <= Date.now()) {
      this.records.delete(taskId);
      return undefined;
    }
    return e;
  }

  async get(taskId: string): Promise<Buffer | undefined> {
    return this.live(taskId)?.payload;
  }

  async getMany(taskIds: readonly string[]): Promise<Array<Buffer | undefined>> {
    return taskIds.map((id) => this.live(id)?.payload);
  }

  async watch(taskId: string, onRecord: (payload: Buffer) => void): Promise<() => void> {
    let set = this.watchers.get(taskId);
    if (!set) {
      set = new Set();
      this.watchers.set(taskId, set);
    }
    set.add(onRecord);
    return () => {
      set!.delete(onRecord);
      if (set!.size === 0) this.watchers.delete(taskId);
    };
  }

  async forget(taskId: string): Promise<void> {
    this.records.delete(taskId);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.watchers.clear();
  }
}
