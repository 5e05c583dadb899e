/**
 * Workers: heartbeats and task counts from events (Celery's liveness rule,
 * src/client/events/state.ts), pool, tasks and queues from `inspect`
 * replies refreshed every `inspectIntervalMs`. A worker with events off is
 * still listed, from its inspect replies.
 */
import { createEventState, type EventState, type WorkerState } from '../../client/events/state.ts';
import type { CeleryEvent } from '../../client/events/types.ts';
import type { Control } from '../../client/control.ts';
import { replyText, shown } from './redact.ts';
import type { TaskRow, WorkerView } from './types.ts';

/** What the last inspect round learnt of one worker. */
export interface InspectSnapshot {
  /** Local time of the reply, epoch seconds. */
  at: number;
  stats?: Record<string, unknown>;
  active?: TaskRow[];
  reserved?: TaskRow[];
  registered?: string[];
  queues?: string[];
}

export interface WorkerTracker {
  apply(event: CeleryEvent): void;
  /** A task event's worker-side outcome (counts shown per worker). */
  count(hostname: string, what: 'received' | 'succeeded' | 'failed'): void;
  /** Ask every worker (stats, active, reserved, registered, active_queues) and keep the replies. */
  refresh(): Promise<void>;
  views(now: number): WorkerView[];
  view(hostname: string, now: number): WorkerView | undefined;
  /** Queues a worker consumes (from the last inspect), without building its view. */
  queuesOf(hostname: string): readonly string[] | undefined;
  /** Workers consuming `queue` (from the last inspect). */
  consumersOf(queue: string): string[];
  /** Every queue some worker consumes. */
  queues(): string[];
  /** Task names workers registered. */
  registered(): string[];
  /** Security counters by worker (`celeriac.security` of `inspect stats`; Celeriac workers only). */
  securityCounters(): Map<string, Record<string, number>>;
  /** Local time of the last inspect round that got at least one reply. */
  readonly lastReplyAt: number;
  readonly lastRefreshAt: number;
}

const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
const numOf = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
const strOf = (v: unknown, max = 1024): string | undefined => (typeof v === 'string' ? v.slice(0, max) : undefined);

/** A task of an `inspect active`/`reserved` reply as a row (args shown redacted: the worker view has no clear mode). */
function taskRow(entry: unknown, worker: string, state: string): TaskRow | undefined {
  if (!isObj(entry)) return undefined;
  const req = isObj(entry.request) ? entry.request : entry;
  const id = strOf(req.id, 255);
  if (!id) return undefined;
  const started = numOf(req.time_start);
  const row: TaskRow = { id, state, worker, updated: started ?? Date.now() / 1000 };
  const name = strOf(req.name ?? req.type);
  if (name) row.name = name;
  if (started !== undefined) row.started = started;
  const args = shown(replyText(req.args), 'repr', false);
  if (args !== undefined) row.args = args;
  const kwargs = shown(replyText(req.kwargs), 'repr', false);
  if (kwargs !== undefined) row.kwargs = kwargs;
  return row;
}

function rows(value: unknown, worker: string, state: string, max = 500): TaskRow[] | undefined {
  if (!Array.isArray(value)) return undefined;
  const out: TaskRow[] = [];
  for (const e of value.slice(0, max)) {
    const r = taskRow(e, worker, state);
    if (r) out.push(r);
  }
  return out;
}

export function createWorkerTracker(options: { control: () => Control; timeoutMs?: number; intervalSeconds?: number; now?: () => number; maxWorkers?: number }): WorkerTracker {
  const now = options.now ?? (() => Date.now() / 1000);
  const maxWorkers = options.maxWorkers ?? 5000;
  // Tasks are tracked by the store; the event state keeps workers (heartbeats, liveness) only.
  const state: EventState = createEventState({ maxTasks: 1, maxWorkers });
  const counts = new Map<string, { received: number; succeeded: number; failed: number }>();
  const snapshots = new Map<string, InspectSnapshot>();
  let lastReplyAt = 0;
  let lastRefreshAt = 0;
  const interval = options.intervalSeconds ?? 10;

  const snapshot = (host: string): InspectSnapshot => {
    let s = snapshots.get(host);
    if (!s) {
      if (snapshots.size >= maxWorkers) snapshots.delete(snapshots.keys().next().value as string);
      snapshots.set(host, (s = { at: now() }));
    }
    s.at = now();
    return s;
  };

  const online = (w: WorkerState | undefined, s: InspectSnapshot | undefined, t: number): boolean => {
    if (w) {
      if (w.offline) return false;
      if (state.isAlive(w, t)) return true;
      if (w.heartbeats.length > 0) return false;
    }
    // Known from inspect only: online while it answered one of the last two rounds.
    return s !== undefined && t - s.at < 2 * interval + 5;
  };

  const view = (host: string, t: number): WorkerView => {
    const w = state.worker(host);
    const s = snapshots.get(host);
    const c = counts.get(host);
    const stats = s?.stats;
    const total = isObj(stats?.total) ? Object.values(stats.total).reduce<number>((a, v) => a + (numOf(v) ?? 0), 0) : undefined;
    const v: WorkerView = {
      hostname: host,
      status: online(w, s, t) ? 'online' : 'offline',
      active: s?.active?.length ?? w?.active ?? 0,
      processed: Math.max(w?.processed ?? 0, c?.received ?? 0, total ?? 0),
      failed: c?.failed ?? 0,
      succeeded: c?.succeeded ?? 0,
    };
    const last = w?.heartbeats[w.heartbeats.length - 1];
    if (last !== undefined) v.lastHeartbeat = last;
    if (w) v.freq = w.freq;
    const pid = w?.pid ?? numOf(stats?.pid);
    if (pid !== undefined) v.pid = pid;
    if (w?.sw_ident) v.software = `${w.sw_ident}${w.sw_ver ? ` ${w.sw_ver}` : ''}`;
    if (w?.loadavg) v.loadavg = [...w.loadavg];
    const pool = isObj(stats?.pool) ? stats.pool : undefined;
    if (pool) {
      const target = numOf(pool['max-concurrency']);
      const procs = Array.isArray(pool.processes) ? pool.processes.length : undefined;
      const kind = strOf(pool.implementation, 200);
      v.pool = { ...(target !== undefined ? { target } : {}), ...(procs !== undefined ? { live: procs } : {}), ...(kind ? { kind } : {}) };
    }
    if (s?.active) v.activeTasks = s.active;
    if (s?.reserved) v.reservedTasks = s.reserved;
    if (s?.registered) v.registered = s.registered;
    if (s?.queues) v.queues = s.queues;
    return v;
  };

  const hosts = (): string[] => {
    const set = new Set<string>();
    for (const w of state.workers()) set.add(w.hostname);
    for (const h of snapshots.keys()) set.add(h);
    return [...set].sort();
  };

  return {
    apply: (ev) => state.apply(ev),
    count(host, what) {
      let c = counts.get(host);
      if (!c) {
        if (counts.size >= maxWorkers) counts.delete(counts.keys().next().value as string);
        counts.set(host, (c = { received: 0, succeeded: 0, failed: 0 }));
      }
      c[what]++;
    },
    async refresh() {
      const timeoutMs = options.timeoutMs ?? 1500;
      const inspect = options.control().inspect({ timeoutMs });
      const settled = await Promise.allSettled([inspect.stats(), inspect.active(), inspect.reserved(), inspect.registered(), inspect.activeQueues()]);
      const [stats, active, reserved, registered, queues] = settled.map((r) => (r.status === 'fulfilled' ? r.value : {}));
      lastRefreshAt = now();
      let any = false;
      for (const [host, reply] of Object.entries(stats ?? {})) {
        // A celeriac beat answers stats too (src/beat/control.ts); it is not a worker (the Beat view shows it).
        if (!isObj(reply) || (isObj(reply.celeriac) && reply.celeriac.role === 'beat')) continue;
        snapshot(host).stats = reply;
        any = true;
      }
      for (const [host, reply] of Object.entries(active ?? {})) {
        const r = rows(reply, host, 'STARTED');
        if (r) snapshot(host).active = r;
        any = true;
      }
      for (const [host, reply] of Object.entries(reserved ?? {})) {
        const r = rows(reply, host, 'RECEIVED');
        if (r) snapshot(host).reserved = r;
        any = true;
      }
      for (const [host, reply] of Object.entries(registered ?? {})) {
        if (!Array.isArray(reply)) continue;
        // Python may append attributes (`tasks.add [rate_limit=…]`); the name is the first word.
        snapshot(host).registered = reply.filter((x): x is string => typeof x === 'string').map((x) => x.split(' ')[0]!.slice(0, 1024)).slice(0, 5000);
        any = true;
      }
      for (const [host, reply] of Object.entries(queues ?? {})) {
        if (!Array.isArray(reply)) continue;
        snapshot(host).queues = reply.map((q) => (isObj(q) ? strOf(q.name, 1024) : undefined)).filter((q): q is string => !!q);
        any = true;
      }
      if (any) lastReplyAt = lastRefreshAt;
    },
    views: (t) => hosts().map((h) => view(h, t)),
    view: (host, t) => (state.worker(host) || snapshots.has(host) ? view(host, t) : undefined),
    queuesOf: (host) => snapshots.get(host)?.queues,
    consumersOf: (queue) => [...snapshots.entries()].filter(([, s]) => s.queues?.includes(queue)).map(([h]) => h).sort(),
    queues: () => [...new Set([...snapshots.values()].flatMap((s) => s.queues ?? []))].sort(),
    registered: () => [...new Set([...snapshots.values()].flatMap((s) => s.registered ?? []))].sort(),
    securityCounters() {
      const out = new Map<string, Record<string, number>>();
      for (const [host, s] of snapshots) {
        const sec = isObj(s.stats?.celeriac) && isObj(s.stats.celeriac.security) ? s.stats.celeriac.security : undefined;
        if (!sec) continue;
        const counters: Record<string, number> = {};
        for (const [k, v] of Object.entries(sec)) if (typeof v === 'number' && Number.isFinite(v) && /^[a-z_]{1,64}$/.test(k)) counters[k] = v;
        out.set(host, counters);
      }
      return out;
    },
    get lastReplyAt() {
      return lastReplyAt;
    },
    get lastRefreshAt() {
      return lastRefreshAt;
    },
  };
}
