/**
 * Ingestion: task events folded into stored tasks, written in batches.
 *
 * Events are queued as they arrive and applied once per tick (`flushMs`,
 * default 50 ms, or at once when `maxBatch` are waiting): every task the
 * tick touched is written in one `putMany` (one SQLite transaction), so the
 * cost per event is a map lookup and a few field copies, and the cost per
 * tick one commit. A task being updated is taken from the tick's own
 * working set, then a small cache of recently written tasks, then the store.
 *
 * The state rules are Celery's (`celery.events.state`), as in
 * src/client/events/state.ts: a task's state follows its events, except
 * that an event older in a task's life (a `task-received` arriving after
 * `task-started`) only fills in fields; RETRY always applies.
 */
import { EVENT_STATE, precedence } from '../../client/events/state.ts';
import type { CeleryEvent } from '../../client/events/types.ts';
import type { StoredTask, TaskStore, TaskWrite, TimelineEntry } from './store.ts';


/** States after which a task runs no more (its `finished` time is set). */
export const FINISHED_STATES: ReadonlySet<string> = new Set(['SUCCESS', 'FAILURE', 'REVOKED', 'REJECTED']);

/** Most timeline entries kept per task (the first, then the latest). */
export const TIMELINE_MAX = 64;

/** Fields that live on the task, not copied into the timeline (large, or shown elsewhere). */
const NOT_IN_TIMELINE = new Set(['type', 'hostname', 'timestamp', 'uuid', 'args', 'kwargs', 'result', 'traceback', 'local_received', 'utcoffset', 'pid', 'clock']);

/** What an observer learns of each applied task event. */
export interface AppliedEvent {
  event: CeleryEvent;
  /** `sent`, `received`, … */
  subject: string;
  task: StoredTask;
  /** State before this event (undefined for a new task). */
  before: string | undefined;
  /** True when this event moved the task into a finished state. */
  finishedNow: boolean;
}

export interface IngestorOptions {
  store: TaskStore;
  /** Tick length, ms (default 50). */
  flushMs?: number;
  /** Flush at once when this many events wait (default 5,000). */
  maxBatch?: number;
  /** Recently written tasks kept to skip a store read (SQLite; default 20,000). */
  cacheSize?: number;
  /** Local clock, epoch seconds. */
  now?: () => number;
  /** Called for each task event as it is applied (before the write). */
  onApplied?: (applied: AppliedEvent) => void;
  /** Called after each tick's write with the tasks written and the lag of the tick's oldest event. */
  onFlushed?: (info: { tasks: readonly StoredTask[]; events: number; maxLagSeconds: number; writeMs: number }) => void;
  /** Called when a write fails (the tick's changes are lost; ingestion goes on). */
  onError?: (err: Error) => void;
}

export interface Ingestor {
  /** Queue one event (only task events change the store). */
  push(event: CeleryEvent): void;
  /** Apply and write everything queued now. */
  flush(): void;
  /** Events waiting for the next tick. */
  readonly pending: number;
  /** Totals since start. */
  readonly stats: { events: number; taskEvents: number; flushes: number; writeErrors: number; lastLagSeconds: number; maxLagSeconds: number };
  close(): void;
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

function nullableStr(v: unknown): string | null | undefined {
  return v === null ? null : typeof v === 'string' ? v : undefined;
}

/** Most fields kept per timeline entry (an event may carry thousands of extra keys). */
const TIMELINE_FIELDS_MAX = 32;

function timelineFields(ev: CeleryEvent): Record<string, string | number | boolean | null> {
  const out: Record<string, string | number | boolean | null> = {};
  let n = 0;
  for (const [k, v] of Object.entries(ev)) {
    if (NOT_IN_TIMELINE.has(k) || k.length > 64) continue;
    if (++n > TIMELINE_FIELDS_MAX) break;
    if (typeof v === 'string') out[k] = v.length > 1024 ? `${v.slice(0, 1024)}…` : v;
    else if (typeof v === 'number' || typeof v === 'boolean' || v === null) out[k] = v;
  }
  return out;
}

/** Fold one task event into a task (in place). Returns the subject and whether it finished the task now. */
export function applyTaskEvent(t: StoredTask, ev: CeleryEvent, at: number): { subject: string; finishedNow: boolean } {
  const subject = ev.type.slice(ev.type.indexOf('-') + 1);
  const known = EVENT_STATE[subject];
  const state = known ?? subject.toUpperCase();
  const ts = ev.timestamp;
  if (subject === 'sent') t.client = ev.hostname;
  else t.worker = ev.hostname;
  switch (subject) {
    case 'sent':
      t.sent = ts;
      break;
    case 'received':
      t.received = ts;
      break;
    case 'started':
      t.started = ts;
      break;
  }
  // Fields every event may fill in (the first `task-sent`/`task-received` carries most of them).
  const name = str(ev.name);
  if (name !== undefined) t.name = name;
  const args = str(ev.args);
  if (args !== undefined) t.args = args;
  const kwargs = str(ev.kwargs);
  if (kwargs !== undefined) t.kwargs = kwargs;
  if (typeof ev.retries === 'number') t.retries = ev.retries;
  const eta = nullableStr(ev.eta);
  if (eta !== undefined) t.eta = eta;
  const expires = nullableStr(ev.expires);
  if (expires !== undefined) t.expires = expires;
  const root = nullableStr(ev.root_id);
  if (root !== undefined) t.rootId = root;
  const parent = nullableStr(ev.parent_id);
  if (parent !== undefined) t.parentId = parent;
  // Not in Celery's events; taken when a sender adds it.
  const group = nullableStr(ev.group_id) ?? nullableStr(ev.group);
  if (group !== undefined) t.groupId = group;
  const queue = str(ev.queue) ?? (subject === 'sent' ? str(ev.routing_key) : undefined);
  if (queue !== undefined) t.queue = queue;
  const earlier = state !== 'RETRY' && t.state !== 'RETRY' && precedence(state) > precedence(t.state);
  let finishedNow = false;
  if (!earlier) {
    const result = str(ev.result);
    if (result !== undefined) t.result = result;
    if (typeof ev.runtime === 'number') t.runtime = ev.runtime;
    const exception = str(ev.exception);
    if (exception !== undefined) t.exception = exception;
    const traceback = str(ev.traceback);
    if (traceback !== undefined) t.traceback = traceback;
    finishedNow = FINISHED_STATES.has(state) && !FINISHED_STATES.has(t.state);
    if (FINISHED_STATES.has(state)) t.finished = ts;
    t.state = state;
  }
  const entry: TimelineEntry = { type: ev.type, timestamp: ts, worker: ev.hostname, fields: timelineFields(ev) };
  t.timeline.push(entry);
  if (t.timeline.length > TIMELINE_MAX) t.timeline.splice(1, 1);
  t.updated = at;
  return { subject, finishedNow };
}

function clone(t: StoredTask): StoredTask {
  return { ...t, timeline: [...t.timeline] };
}

/** Create the ingestion queue over a store. */
export function createIngestor(options: IngestorOptions): Ingestor {
  const store = options.store;
  const flushMs = options.flushMs ?? 50;
  const maxBatch = options.maxBatch ?? 5000;
  const now = options.now ?? (() => Date.now() / 1000);
  const cacheSize = store.kind === 'sqlite' ? (options.cacheSize ?? 20_000) : 0;
  const cache = new Map<string, StoredTask>();
  let queue: CeleryEvent[] = [];
  let timer: NodeJS.Timeout | undefined;
  let lastUpdated = 0;
  let closed = false;
  const stats = { events: 0, taskEvents: 0, flushes: 0, writeErrors: 0, lastLagSeconds: 0, maxLagSeconds: 0 };

  const load = (id: string): StoredTask | undefined => {
    const hit = cache.get(id);
    if (hit) return clone(hit);
    const t = store.get(id);
    return t ? clone(t) : undefined;
  };

  const flush = (): void => {
    if (timer) {
      clearTimeout(timer);
      timer = undefined;
    }
    if (queue.length === 0) return;
    const batch = queue;
    queue = [];
    const working = new Map<string, TaskWrite>();
    let oldest = Infinity;
    for (const ev of batch) {
      if (ev.local_received < oldest) oldest = ev.local_received;
      if (!ev.type.startsWith('task-') || typeof ev.uuid !== 'string') continue;
      stats.taskEvents++;
      const id = ev.uuid;
      let w = working.get(id);
      if (!w) {
        const existing = load(id);
        w = existing ? { task: existing, before: { ...(existing.name !== undefined ? { name: existing.name } : {}), state: existing.state } } : { task: { id, state: 'PENDING', updated: 0, timeline: [] } };
        working.set(id, w);
      }
      const at = Math.max(now(), lastUpdated);
      lastUpdated = at;
      const before = w.task.timeline.length ? w.task.state : undefined;
      const { subject, finishedNow } = applyTaskEvent(w.task, ev, at);
      options.onApplied?.({ event: ev, subject, task: w.task, before, finishedNow });
    }
    const writes = [...working.values()];
    const t0 = performance.now();
    try {
      store.putMany(writes);
    } catch (err) {
      stats.writeErrors++;
      options.onError?.(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    const writeMs = performance.now() - t0;
    if (cacheSize > 0) {
      for (const { task } of writes) {
        cache.delete(task.id);
        cache.set(task.id, task);
      }
      while (cache.size > cacheSize) cache.delete(cache.keys().next().value as string);
    }
    stats.flushes++;
    const lag = oldest === Infinity ? 0 : Math.max(0, now() - oldest);
    stats.lastLagSeconds = lag;
    if (lag > stats.maxLagSeconds) stats.maxLagSeconds = lag;
    options.onFlushed?.({ tasks: writes.map((w) => w.task), events: batch.length, maxLagSeconds: lag, writeMs });
  };

  return {
    push(event) {
      if (closed) return;
      stats.events++;
      queue.push(event);
      if (queue.length >= maxBatch) flush();
      else timer ??= setTimeout(flush, flushMs);
    },
    flush,
    get pending() {
      return queue.length;
    },
    stats,
    close() {
      flush();
      closed = true;
      cache.clear();
    },
  };
}
