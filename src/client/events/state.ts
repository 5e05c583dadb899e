/**
 * Cluster state from events, in the spirit of Celery's
 * `celery.events.state.State` (our own code, Celery's rules as facts):
 *
 * - a worker is alive while its last heartbeat (the local time it was
 *   received) is younger than `freq × 2` — Celery's expire window is 200 %
 *   of the heartbeat interval (`freq` defaults to 60 s); `worker-offline`
 *   clears its heartbeats; every task event a worker sends counts as a
 *   heartbeat; at most the last 4 heartbeats are kept;
 * - a task's state follows its events (`sent` PENDING, `received`
 *   RECEIVED, `started` STARTED, `succeeded` SUCCESS, `failed` FAILURE,
 *   `retried` RETRY, `revoked` REVOKED, `rejected` REJECTED); an event that
 *   logically happened before the current state (lower in Celery's
 *   precedence: SUCCESS, FAILURE, custom, REVOKED, STARTED, RECEIVED,
 *   REJECTED, RETRY, PENDING) does not move the state back, and only
 *   `task-received` fills in the fields it carries (name, args…);
 *   RETRY always moves the state.
 *
 * Unlike Celery, a worker that went offline stays listed (as offline).
 * Pure: no I/O, the caller passes the clock; memory is bounded by
 * `maxTasks` and `maxWorkers` (least recently updated dropped first).
 */
import type { CeleryEvent } from './types.ts';

export type TaskStateName = 'PENDING' | 'RECEIVED' | 'STARTED' | 'SUCCESS' | 'FAILURE' | 'RETRY' | 'REVOKED' | 'REJECTED' | (string & {});

/** Celery's expire window: a worker is offline `freq × 200 %` after its last heartbeat. */
export const HEARTBEAT_EXPIRE_WINDOW = 2;
/** Heartbeats kept per worker. */
export const HEARTBEATS_KEPT = 4;
/** Celery's default heartbeat interval when a worker did not say, seconds. */
export const DEFAULT_HEARTBEAT_FREQ = 60;

/** The state a task event sets (`task-<subject>`), as Celery's `State` maps it. */
export const EVENT_STATE: Readonly<Record<string, TaskStateName>> = {
  sent: 'PENDING',
  received: 'RECEIVED',
  started: 'STARTED',
  succeeded: 'SUCCESS',
  failed: 'FAILURE',
  retried: 'RETRY',
  revoked: 'REVOKED',
  rejected: 'REJECTED',
};

// Index in Celery's precedence list: lower is "later" in a task's life. Custom states rank where Celery's `None` does.
const PRECEDENCE: Readonly<Record<string, number>> = { SUCCESS: 0, FAILURE: 1, REVOKED: 3, STARTED: 4, RECEIVED: 5, REJECTED: 6, RETRY: 7, PENDING: 8 };
const CUSTOM_PRECEDENCE = 2;
/** Celery's state precedence: lower is later in a task's life (custom states rank as Celery's `None`). */
export const precedence = (state: string): number => PRECEDENCE[state] ?? CUSTOM_PRECEDENCE;

/** Fields an earlier-than-current `task-received` may still fill in. */
const RECEIVED_MERGE = ['name', 'args', 'kwargs', 'parent_id', 'root_id', 'retries', 'eta', 'expires'] as const;
/** Task fields copied from events (anything else an event carries is not kept). */
const TASK_FIELDS = [...RECEIVED_MERGE, 'result', 'runtime', 'exception', 'traceback', 'queue', 'exchange', 'routing_key', 'terminated', 'expired', 'signum', 'requeue'] as const;

export const READY_TASK_STATES: ReadonlySet<string> = new Set(['SUCCESS', 'FAILURE', 'REVOKED']);

/** What is known of one worker. */
export interface WorkerState {
  hostname: string;
  pid?: number;
  /** Heartbeat interval, seconds. */
  freq: number;
  /** Local receive times of the last heartbeats, oldest first (at most 4). */
  heartbeats: number[];
  active?: number;
  processed?: number;
  loadavg?: number[] | null;
  sw_ident?: string;
  sw_ver?: string;
  sw_sys?: string;
  clock: number;
  /** True once a `worker-offline` came (until its next heartbeat). */
  offline: boolean;
  /** Local time of the last event from it. */
  lastSeen: number;
}

/** What is known of one task. */
export interface EventTaskState {
  uuid: string;
  state: TaskStateName;
  name?: string;
  /** Node that sent it (`task-sent`). */
  client?: string;
  /** Worker that handled it. */
  worker?: string;
  /** Sender timestamps of each event, by event (`sent`, `received`, `started`, …). */
  sent?: number;
  received?: number;
  started?: number;
  succeeded?: number;
  failed?: number;
  retried?: number;
  revoked?: number;
  rejected?: number;
  /** Sender timestamp of the event that set `state`. */
  timestamp?: number;
  /** Local time of the last event about it. */
  lastSeen: number;
  args?: string;
  kwargs?: string;
  retries?: number;
  eta?: string | null;
  expires?: string | null;
  root_id?: string | null;
  parent_id?: string | null;
  result?: string;
  runtime?: number;
  exception?: string;
  traceback?: string;
  [field: string]: unknown;
}

/** Counts and rate of one task name. */
export interface TaskTypeStats {
  name: string;
  /** Tasks known (within `maxTasks`) by state. */
  byState: Record<string, number>;
  total: number;
  /** Tasks that reached a ready state (SUCCESS, FAILURE, REVOKED) per second over the rate window. */
  rate: number;
}

/** Options of `createEventState`. */
export interface EventStateOptions {
  /** Most tasks kept (default 10,000). */
  maxTasks?: number;
  /** Most workers kept (default 5,000). */
  maxWorkers?: number;
  /** Window of `rate`, seconds (default 10). */
  rateWindow?: number;
}

/** The aggregated state. `now` is epoch seconds, on the same clock as `local_received`. */
export interface EventState {
  /** Fold one event in. */
  apply(event: CeleryEvent): void;
  /** Events applied. */
  readonly eventCount: number;
  /** Tasks received by a worker (`task-received` events). */
  readonly taskCount: number;
  workers(): WorkerState[];
  worker(hostname: string): WorkerState | undefined;
  /** Celery's rule: a heartbeat younger than `freq × 2`. */
  isAlive(worker: WorkerState, now: number): boolean;
  /** When the worker will be considered gone unless it beats again, epoch seconds (undefined without heartbeats). */
  heartbeatExpires(worker: WorkerState): number | undefined;
  task(uuid: string): EventTaskState | undefined;
  /** The `limit` most recently updated tasks, newest first. */
  recentTasks(limit: number): EventTaskState[];
  /** Tasks known, by state. */
  countsByState(): Record<string, number>;
  /** Per task name: counts by state and ready tasks per second. */
  taskTypes(now: number): TaskTypeStats[];
  /** Ready tasks per second over the rate window, all names. */
  rate(now: number): number;
}

function touch<K, V>(map: Map<K, V>, key: K, value: V, max: number): void {
  map.delete(key);
  map.set(key, value);
  while (map.size > max) map.delete(map.keys().next().value as K);
}

/** Create an empty state. */
export function createEventState(options: EventStateOptions = {}): EventState {
  const maxTasks = options.maxTasks ?? 10_000;
  const maxWorkers = options.maxWorkers ?? 5_000;
  const window = options.rateWindow ?? 10;
  const workers = new Map<string, WorkerState>();
  const tasks = new Map<string, EventTaskState>();
  // Local times of ready transitions per task name, for rates (bounded).
  const readyTimes = new Map<string, number[]>();
  let eventCount = 0;
  let taskCount = 0;

  const workerFor = (hostname: string, at: number): WorkerState => {
    let w = workers.get(hostname);
    if (!w) w = { hostname, freq: DEFAULT_HEARTBEAT_FREQ, heartbeats: [], clock: 0, offline: false, lastSeen: at };
    w.lastSeen = at;
    touch(workers, hostname, w, maxWorkers);
    return w;
  };

  const beat = (w: WorkerState, at: number): void => {
    const hb = w.heartbeats;
    if (hb.length >= HEARTBEATS_KEPT) hb.shift();
    if (hb.length === 0 || at >= hb[hb.length - 1]!) hb.push(at);
    else {
      let i = hb.length;
      while (i > 0 && hb[i - 1]! > at) i--;
      hb.splice(i, 0, at);
    }
  };

  const onWorker = (ev: CeleryEvent, subject: string): void => {
    const w = workerFor(ev.hostname, ev.local_received);
    for (const k of ['pid', 'active', 'processed', 'loadavg', 'sw_ident', 'sw_ver', 'sw_sys', 'clock'] as const) {
      if (ev[k] !== undefined) (w as unknown as Record<string, unknown>)[k] = ev[k];
    }
    if (typeof ev.freq === 'number' && ev.freq > 0) w.freq = ev.freq;
    if (subject === 'offline') {
      w.heartbeats = [];
      w.offline = true;
    } else {
      w.offline = false;
      beat(w, ev.local_received);
    }
  };

  const recordReady = (name: string, at: number): void => {
    let times = readyTimes.get(name);
    if (!times) {
      readyTimes.set(name, (times = []));
      if (readyTimes.size > maxTasks) readyTimes.delete(readyTimes.keys().next().value as string);
    }
    times.push(at);
    if (times.length > 100_000) times.splice(0, times.length - 100_000);
  };

  const onTask = (ev: CeleryEvent, subject: string): void => {
    const uuid = ev.uuid as string;
    let t = tasks.get(uuid);
    if (!t) t = { uuid, state: 'PENDING', lastSeen: ev.local_received };
    t.lastSeen = ev.local_received;
    touch(tasks, uuid, t, maxTasks);
    if (subject === 'sent') t.client = ev.hostname;
    else {
      const w = workerFor(ev.hostname, ev.local_received);
      t.worker = ev.hostname;
      if (!w.offline) beat(w, ev.local_received);
    }
    if (subject === 'received') taskCount++;
    const known = EVENT_STATE[subject];
    const state = known ?? subject.toUpperCase();
    const rec = t as Record<string, unknown>;
    if (known) rec[subject] = ev.timestamp;
    const before = t.state;
    const earlier = state !== 'RETRY' && before !== 'RETRY' && precedence(state) > precedence(before);
    if (earlier) {
      if (state === 'RECEIVED') for (const k of RECEIVED_MERGE) if (ev[k] !== undefined) rec[k] = ev[k];
    } else {
      for (const k of TASK_FIELDS) if (ev[k] !== undefined) rec[k] = ev[k];
      t.state = state;
      t.timestamp = ev.timestamp;
      if (READY_TASK_STATES.has(state) && !READY_TASK_STATES.has(before)) recordReady(t.name ?? '', ev.local_received);
    }
  };

  const prune = (times: number[], now: number): void => {
    let i = 0;
    while (i < times.length && times[i]! <= now - window) i++;
    if (i > 0) times.splice(0, i);
  };

  return {
    apply(ev) {
      eventCount++;
      const dash = ev.type.indexOf('-');
      const group = dash < 0 ? ev.type : ev.type.slice(0, dash);
      const subject = dash < 0 ? '' : ev.type.slice(dash + 1);
      if (group === 'worker') onWorker(ev, subject);
      else if (group === 'task' && typeof ev.uuid === 'string' && subject) onTask(ev, subject);
    },
    get eventCount() {
      return eventCount;
    },
    get taskCount() {
      return taskCount;
    },
    workers: () => [...workers.values()],
    worker: (hostname) => workers.get(hostname),
    heartbeatExpires: (w) => (w.heartbeats.length ? w.heartbeats[w.heartbeats.length - 1]! + w.freq * HEARTBEAT_EXPIRE_WINDOW : undefined),
    isAlive(w, now) {
      const expires = this.heartbeatExpires(w);
      return expires !== undefined && now < expires;
    },
    task: (uuid) => tasks.get(uuid),
    recentTasks(limit) {
      const out: EventTaskState[] = [];
      const all = [...tasks.values()];
      for (let i = all.length - 1; i >= 0 && out.length < limit; i--) out.push(all[i]!);
      return out;
    },
    countsByState() {
      const counts: Record<string, number> = {};
      for (const t of tasks.values()) counts[t.state] = (counts[t.state] ?? 0) + 1;
      return counts;
    },
    taskTypes(now) {
      const byName = new Map<string, TaskTypeStats>();
      for (const t of tasks.values()) {
        const name = t.name ?? '';
        let s = byName.get(name);
        if (!s) byName.set(name, (s = { name, byState: {}, total: 0, rate: 0 }));
        s.byState[t.state] = (s.byState[t.state] ?? 0) + 1;
        s.total++;
      }
      for (const [name, times] of readyTimes) {
        prune(times, now);
        const s = byName.get(name);
        if (s) s.rate = times.length / window;
      }
      return [...byName.values()].sort((a, b) => a.name.localeCompare(b.name));
    },
    rate(now) {
      let n = 0;
      for (const times of readyTimes.values()) {
        prune(times, now);
        n += times.length;
      }
      return n / window;
    },
  };
}
