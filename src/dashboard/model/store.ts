/**
 * Task history: one small interface, two implementations — bounded memory
 * (`store-memory.ts`, Flower's `max_tasks`: the least recently updated task
 * is evicted) and the embedded SQLite (`store-sqlite.ts`: indexed, paged by
 * keyset, pruned by age and count in small batches).
 *
 * Stores are synchronous (better-sqlite3 is): the ingestion writes a tick's
 * changes in one call, and list pages are answered without awaiting I/O.
 */

/** One event in a task's timeline (large fields such as args and tracebacks live on the task, not here). */
export interface TimelineEntry {
  type: string;
  /** Sender's timestamp, epoch seconds. */
  timestamp: number;
  worker?: string;
  fields: Record<string, string | number | boolean | null>;
}

/** A task as stored: the row, the detail, and the timeline. Text fields are stored as received (redacted on the way out). */
export interface StoredTask {
  id: string;
  name?: string;
  state: string;
  worker?: string;
  /** Local time of the last change, epoch seconds; never decreases (the store's order). */
  updated: number;
  sent?: number;
  received?: number;
  started?: number;
  finished?: number;
  runtime?: number;
  retries?: number;
  args?: string;
  kwargs?: string;
  result?: string;
  exception?: string;
  traceback?: string;
  eta?: string | null;
  expires?: string | null;
  rootId?: string | null;
  parentId?: string | null;
  groupId?: string | null;
  /** Queue it was sent to (task-sent), when known. */
  queue?: string;
  /** Node that sent it. */
  client?: string;
  timeline: TimelineEntry[];
}

/** Fields of a row in a list page (the timeline and the detail fields are left out). */
export type StoredRow = Omit<StoredTask, 'timeline' | 'traceback'> & { timeline?: undefined };

/** A query as the store runs it (the model resolves name substrings to names first). */
export interface StoreQuery {
  id?: string;
  /** Exact names (any of them). */
  names?: readonly string[];
  /** Substring of the name, when too many names match to list them. */
  nameContains?: string;
  state?: string;
  worker?: string;
  /** Inclusive range over `updated`, epoch seconds. */
  from?: number;
  to?: number;
  limit: number;
  /** The store's own opaque cursor. */
  cursor?: string;
}

/** A page, newest first. */
export interface StorePage {
  items: StoredRow[];
  total: number;
  totalIsEstimate: boolean;
  nextCursor?: string;
}

/** A task written by the ingestion, with what it was before (for the counters). */
export interface TaskWrite {
  task: StoredTask;
  /** Name and state it had in the store, or undefined when new. */
  before?: { name?: string; state: string };
}

/** Most matching rows counted exactly; above it `total` is an estimate. */
export const EXACT_COUNT_LIMIT = 10_000;

export interface TaskStore {
  readonly kind: 'memory' | 'sqlite';
  get(id: string): StoredTask | undefined;
  /** Write a tick's changes at once (SQLite: one transaction). */
  putMany(writes: readonly TaskWrite[]): void;
  query(q: StoreQuery): StorePage;
  /** Ids of the tasks whose parent is `id`. */
  children(id: string, limit?: number): string[];
  /** Tasks stored. */
  size(): number;
  /** Task names seen (of stored tasks), sorted. */
  names(): string[];
  /** Stored tasks by name, then state (for metrics and estimates). */
  countsByNameState(): ReadonlyMap<string, ReadonlyMap<string, number>>;
  /**
   * Remove one small batch of tasks past retention (older than `olderThan`,
   * or beyond the count cap); returns how many were removed (0: nothing left to do).
   */
  prune(options: { olderThan?: number; batch?: number }): number;
  /** Small state kept with the tasks (the paused queues): survives a restart with the SQLite store. */
  getMeta(key: string): string | undefined;
  setMeta(key: string, value: string | undefined): void;
  close(): void;
}

/** `name`, `state`, `updated` and `id` of rows in a page's order: newest first, ties by id descending. */
export function compareNewestFirst(a: { updated: number; id: string }, b: { updated: number; id: string }): number {
  return b.updated - a.updated || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0);
}

/** Add `delta` to the count of (name, state), dropping zeros. */
export function bump(counts: Map<string, Map<string, number>>, name: string | undefined, state: string, delta: number): void {
  const key = name ?? '';
  let byState = counts.get(key);
  if (!byState) counts.set(key, (byState = new Map()));
  const n = (byState.get(state) ?? 0) + delta;
  if (n > 0) byState.set(state, n);
  else {
    byState.delete(state);
    if (byState.size === 0) counts.delete(key);
  }
}

/** A row of a page from a stored task. */
export function rowOf(t: StoredTask): StoredRow {
  const { timeline: _t, traceback: _tb, ...row } = t;
  return row;
}

/** Whether a stored task matches the query's filters (ignoring the cursor). */
export function matches(t: { id: string; name?: string; state: string; worker?: string; updated: number }, q: StoreQuery, names?: ReadonlySet<string>): boolean {
  if (q.id !== undefined && t.id !== q.id) return false;
  if (names && !names.has(t.name ?? '')) return false;
  if (q.nameContains !== undefined && !(t.name ?? '').includes(q.nameContains)) return false;
  if (q.state !== undefined && t.state !== q.state) return false;
  if (q.worker !== undefined && t.worker !== q.worker) return false;
  if (q.from !== undefined && t.updated < q.from) return false;
  if (q.to !== undefined && t.updated > q.to) return false;
  return true;
}
