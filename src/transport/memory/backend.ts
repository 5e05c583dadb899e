/**
 * In-memory result backend for unit tests in one process. Not for
 * production: records vanish with the process.
 */
import type { ExpiringIdSet } from '../../core/backend.ts';
import { memoryExpiringIdSet } from './expiring-set.ts';
import { ClosedError } from '../../errors.ts';
import type { ChordPart, ResultBackend, StoredRecord, StoreOptions } from '../../core/backend.ts';

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
  /** Saved groups (`celery-taskset-meta-<id>`). */
  private readonly groups = new Map<string, Buffer>();
  /** Chord joins: the header size and the parts so far (one process: the map is the atomic counter). */
  private readonly chords = new Map<string, { size: number | undefined; parts: Array<{ score: number; entry: Buffer }> }>();

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

  async saveGroup(groupId: string, payload: Buffer): Promise<void> {
    this.groups.set(groupId, Buffer.from(payload));
  }

  async getGroup(groupId: string): Promise<Buffer | undefined> {
    return this.groups.get(groupId);
  }

  async forgetGroup(groupId: string): Promise<void> {
    this.groups.delete(groupId);
  }

  async setChordSize(groupId: string, size: number): Promise<void> {
    const c = this.chords.get(groupId);
    if (c) c.size = size;
    else this.chords.set(groupId, { size, parts: [] });
  }

  /** Celery's `add_to_chord`: the join waits for `count` more parts (none when no size was set: the join is gone). */
  async addToChord(groupId: string, count: number): Promise<void> {
    const c = this.chords.get(groupId);
    if (c?.size !== undefined) c.size += count;
  }

  async chordPartReturn(part: ChordPart): Promise<Buffer[] | undefined> {
    let c = this.chords.get(part.groupId);
    if (!c) this.chords.set(part.groupId, (c = { size: undefined, parts: [] }));
    // A redelivered part (the same entry) counts once, as a sorted-set member does.
    if (!c.parts.some((p) => p.entry.equals(part.entry))) c.parts.push({ score: part.groupIndex ?? Infinity, entry: Buffer.from(part.entry) });
    if (c.size === undefined || c.parts.length !== c.size) return undefined;
    this.chords.delete(part.groupId);
    return [...c.parts].sort((a, b) => a.score - b.score || Buffer.compare(a.entry, b.entry)).map((p) => p.entry);
  }

  async forget(taskId: string): Promise<void> {
    this.records.delete(taskId);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.watchers.clear();
  }
}
