/**
 * The bounded in-memory task store (Flower's `max_tasks`): at most
 * `maxTasks` tasks; past it the least recently updated is evicted.
 *
 * Order is kept by an append-only log of (id, seq): every write appends, the
 * entry a later write supersedes is skipped when read and dropped when the
 * log is compacted. Pages walk the log from the newest end (or from the
 * cursor, found by binary search on seq), so a first page costs what it
 * returns, whatever the size.
 */
import { bump, EXACT_COUNT_LIMIT, matches, rowOf, type StorePage, type StoreQuery, type StoredTask, type TaskStore, type TaskWrite } from './store.ts';

/** Most tasks a count scans before it extrapolates. */
const SCAN_LIMIT = 100_000;

/** Flower's default `max_tasks`. */
export const DEFAULT_MEMORY_MAX_TASKS = 10_000;

interface Slot {
  task: StoredTask;
  seq: number;
}

/** Create a memory store holding at most `maxTasks` tasks. */
export function createMemoryStore(options: { maxTasks?: number } = {}): TaskStore {
  const maxTasks = Math.max(1, options.maxTasks ?? DEFAULT_MEMORY_MAX_TASKS);
  const tasks = new Map<string, Slot>();
  let logIds: string[] = [];
  let logSeqs: number[] = [];
  let head = 0;
  let seq = 0;
  let lastUpdated = 0;
  const counts = new Map<string, Map<string, number>>();
  // By worker too, so the common filters (name, worker, state and their pairs with state) are counted exactly without a scan.
  const workerCounts = new Map<string, Map<string, number>>();
  const children = new Map<string, Set<string>>();
  const meta = new Map<string, string>();

  const unlinkChild = (t: StoredTask): void => {
    if (!t.parentId) return;
    const set = children.get(t.parentId);
    set?.delete(t.id);
    if (set?.size === 0) children.delete(t.parentId);
  };

  const remove = (id: string): void => {
    const slot = tasks.get(id);
    if (!slot) return;
    tasks.delete(id);
    bump(counts, slot.task.name, slot.task.state, -1);
    bump(workerCounts, slot.task.worker, slot.task.state, -1);
    unlinkChild(slot.task);
  };

  const live = (i: number): boolean => tasks.get(logIds[i]!)?.seq === logSeqs[i];

  const compact = (): void => {
    const ids: string[] = [];
    const seqs: number[] = [];
    for (let i = head; i < logIds.length; i++) {
      if (live(i)) {
        ids.push(logIds[i]!);
        seqs.push(logSeqs[i]!);
      }
    }
    logIds = ids;
    logSeqs = seqs;
    head = 0;
  };

  const evict = (): void => {
    while (tasks.size > maxTasks && head < logIds.length) {
      if (live(head)) remove(logIds[head]!);
      head++;
    }
    if (logIds.length - head > 2 * tasks.size + 1024) compact();
  };

  /** Index of the newest log entry with seq < `before`. */
  const startIndex = (before: number | undefined): number => {
    if (before === undefined) return logIds.length - 1;
    let lo = head;
    let hi = logIds.length - 1;
    let found = head - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (logSeqs[mid]! < before) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return found;
  };

  /** The number of matching tasks when the counters know it (name, worker and state filters), else undefined. */
  const exactTotal = (q: StoreQuery, names: ReadonlySet<string> | undefined): number | undefined => {
    if (q.from !== undefined || q.to !== undefined || q.nameContains !== undefined) return undefined;
    const sum = (m: ReadonlyMap<string, number> | undefined, state?: string): number => (state !== undefined ? (m?.get(state) ?? 0) : [...(m?.values() ?? [])].reduce((a, b) => a + b, 0));
    if (names && q.worker === undefined) {
      let n = 0;
      for (const name of names) n += sum(counts.get(name), q.state);
      return n;
    }
    if (!names && q.worker !== undefined) return sum(workerCounts.get(q.worker), q.state);
    if (!names && q.worker === undefined && q.state !== undefined) {
      let n = 0;
      for (const byState of counts.values()) n += byState.get(q.state) ?? 0;
      return n;
    }
    return undefined;
  };

  return {
    kind: 'memory',
    get: (id) => tasks.get(id)?.task,
    putMany(writes: readonly TaskWrite[]) {
      for (const { task } of writes) {
        // The log's order is the update order; `updated` follows it so range filters can stop early.
        if (task.updated < lastUpdated) task.updated = lastUpdated;
        lastUpdated = task.updated;
        const old = tasks.get(task.id);
        if (old) {
          bump(counts, old.task.name, old.task.state, -1);
          bump(workerCounts, old.task.worker, old.task.state, -1);
          if (old.task.parentId !== task.parentId) unlinkChild(old.task);
        }
        bump(counts, task.name, task.state, 1);
        bump(workerCounts, task.worker, task.state, 1);
        if (task.parentId) {
          let set = children.get(task.parentId);
          if (!set) children.set(task.parentId, (set = new Set()));
          set.add(task.id);
        }
        const s = ++seq;
        tasks.set(task.id, { task, seq: s });
        logIds.push(task.id);
        logSeqs.push(s);
      }
      evict();
    },
    query(q: StoreQuery): StorePage {
      const limit = q.limit;
      if (q.id !== undefined) {
        const t = tasks.get(q.id)?.task;
        const items = t && matches(t, q, q.names ? new Set(q.names) : undefined) && !q.cursor ? [rowOf(t)] : [];
        return { items, total: items.length, totalIsEstimate: false };
      }
      const names = q.names ? new Set(q.names) : undefined;
      const filtered = names !== undefined || q.nameContains !== undefined || q.state !== undefined || q.worker !== undefined || q.from !== undefined || q.to !== undefined;
      const exact = filtered ? exactTotal(q, names) : tasks.size;
      // Nothing matches by the counts: no need to read the log to find out.
      if (exact === 0) return { items: [], total: 0, totalIsEstimate: false };
      const items: StoredRow[] = [];
      let nextCursor: string | undefined;
      const before = q.cursor !== undefined ? Number(q.cursor) : undefined;
      for (let i = startIndex(Number.isFinite(before) ? before : undefined); i >= head; i--) {
        if (!live(i)) continue;
        const t = tasks.get(logIds[i]!)!.task;
        if (q.from !== undefined && t.updated < q.from) break;
        if (!matches(t, q, names)) continue;
        if (items.length === limit) {
          nextCursor = String(logSeqs[i]! + 1);
          break;
        }
        items.push(rowOf(t));
      }
      let total = exact ?? 0;
      let totalIsEstimate = false;
      if (exact === undefined) {
        // Other combinations are counted by a scan, newest first, of at most SCAN_LIMIT tasks; beyond it the total is extrapolated.
        let examined = 0;
        for (let i = logIds.length - 1; i >= head; i--) {
          if (!live(i)) continue;
          const t = tasks.get(logIds[i]!)!.task;
          if (q.from !== undefined && t.updated < q.from) break;
          if (matches(t, q, names) && ++total > EXACT_COUNT_LIMIT) {
            totalIsEstimate = true;
            break;
          }
          if (++examined >= SCAN_LIMIT) {
            totalIsEstimate = true;
            total = Math.round((total / examined) * tasks.size);
            break;
          }
        }
      }
      return { items, total, totalIsEstimate, ...(nextCursor ? { nextCursor } : {}) };
    },
    children: (id, limit = 1000) => [...(children.get(id) ?? [])].slice(0, limit),
    size: () => tasks.size,
    names: () => [...counts.keys()].filter(Boolean).sort(),
    countsByNameState: () => counts,
    prune({ olderThan, batch = 1000 }) {
      if (olderThan === undefined) return 0;
      let n = 0;
      while (head < logIds.length && n < batch) {
        if (live(head)) {
          const t = tasks.get(logIds[head]!)!.task;
          if (t.updated >= olderThan) break;
          remove(t.id);
          n++;
        }
        head++;
      }
      return n;
    },
    getMeta: (key) => meta.get(key),
    setMeta(key, value) {
      if (value === undefined) meta.delete(key);
      else meta.set(key, value);
    },
    close() {
      tasks.clear();
      counts.clear();
      workerCounts.clear();
      logIds = [];
      logSeqs = [];
      head = 0;
    },
  };
}

type StoredRow = ReturnType<typeof rowOf>;
