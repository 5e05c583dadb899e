/**
 * The contract between the dashboard's model (what it knows and can do:
 * `src/dashboard/model/`) and its server (HTTP, auth, UI: `src/dashboard/server/`).
 * The server never touches a broker or the event stream directly; the model never
 * knows who is asking: permission checks and the audit log live in the server.
 */

/** One worker, as the workers view shows it (Celeriac and Python Celery workers alike). */
export interface WorkerView {
  hostname: string;
  status: 'online' | 'offline';
  /** Epoch seconds of the last heartbeat, if any. */
  lastHeartbeat?: number;
  /** Heartbeat interval announced by the worker, seconds. */
  freq?: number;
  pid?: number;
  /** e.g. `py-celery 5.2.6`, `celeriac 0.1.0`. */
  software?: string;
  loadavg?: number[];
  /** Tasks running now (from heartbeats / inspect). */
  active: number;
  processed: number;
  failed: number;
  succeeded: number;
  /** Pool size: target and live processes/slots, when the worker reports them (inspect stats). */
  pool?: { target?: number; live?: number; kind?: string };
  /** From `inspect` replies, refreshed periodically; undefined until the first reply. */
  activeTasks?: TaskRow[];
  reservedTasks?: TaskRow[];
  registered?: string[];
  queues?: string[];
}

export type TaskState = 'PENDING' | 'RECEIVED' | 'STARTED' | 'SUCCESS' | 'FAILURE' | 'RETRY' | 'REVOKED' | 'REJECTED' | (string & {});

/** One row of the tasks table. Values from tasks are plain strings: the UI renders them as text. */
export interface TaskRow {
  id: string;
  name?: string;
  state: TaskState;
  worker?: string;
  /** Epoch seconds. */
  sent?: number;
  received?: number;
  started?: number;
  /** When it reached a ready state (SUCCESS/FAILURE/REVOKED/REJECTED). */
  finished?: number;
  /** Seconds the task ran (task-succeeded `runtime`). */
  runtime?: number;
  retries?: number;
  /** Redacted unless the query asked for clear text (permission checked by the server). */
  args?: string;
  kwargs?: string;
  result?: string;
  exception?: string;
  /** Epoch seconds of the last change. */
  updated: number;
}

/** Detail page of one task. */
export interface TaskDetail extends TaskRow {
  traceback?: string;
  eta?: string | null;
  expires?: string | null;
  rootId?: string | null;
  parentId?: string | null;
  groupId?: string | null;
  /** Queue it was sent to, when a `task-sent` event said. */
  queue?: string;
  children: string[];
  /** Every event seen for it, oldest first. */
  timeline: Array<{ type: string; timestamp: number; worker?: string; fields: Record<string, string | number | boolean | null> }>;
  /** True when args/kwargs/result are shown in clear (the caller asked and was allowed). */
  clear: boolean;
}

/** Filters of the tasks table. All optional; text matches are exact for id, substring for name. */
export interface TaskQuery {
  id?: string;
  name?: string;
  state?: TaskState;
  worker?: string;
  /** Epoch seconds, inclusive range over `updated`. */
  from?: number;
  to?: number;
  /** Default 50, at most 500. */
  limit?: number;
  /** Opaque cursor from the previous page. */
  cursor?: string;
  /** Show args/kwargs/result in clear; only after the server checked the permission. */
  clear?: boolean;
}

export interface TaskPage {
  items: TaskRow[];
  /** Matching rows (may be an estimate above 10,000: then `totalIsEstimate`). */
  total: number;
  totalIsEstimate?: boolean;
  nextCursor?: string;
}

/** One queue, as the queues view shows it. */
export interface QueueView {
  name: string;
  /** Messages waiting (broker's count). */
  depth: number;
  /** Messages per second in (sent) and out (started), over the last minute. */
  rateIn: number;
  rateOut: number;
  /** Seconds since the oldest waiting message was sent, when known. */
  oldestAgeSeconds?: number;
  deadLetters: number;
  /** True when `deadLetters` hit the counting cap (1,000): there may be more. */
  deadLettersCapped?: boolean;
  /** True while consumers are cancelled on it by a pause. */
  paused: boolean;
  /** Workers consuming it. */
  consumers: string[];
}

export interface DeadLetterView {
  /** Task id of the dead-lettered message. */
  id: string;
  name?: string;
  reason: string;
  /** Epoch seconds. */
  at?: number;
  /** Redacted unless clear. */
  args?: string;
  kwargs?: string;
  /** The record was stored truncated (too large): it cannot be redriven. */
  truncated?: boolean;
}

/** One point per bucket (default one minute) of the charts. */
export interface SeriesPoint {
  /** Bucket start, epoch seconds. */
  t: number;
  succeeded: number;
  failed: number;
  retried: number;
  received: number;
  /** Seconds from received to finished, over the bucket's finished tasks. */
  latencyP50?: number;
  latencyP95?: number;
}

/** A change pushed to live views (SSE). Small on purpose: the UI refetches what it shows. */
export type LiveUpdate =
  | { kind: 'task'; task: TaskRow }
  | { kind: 'worker'; worker: WorkerView }
  | { kind: 'stats'; eventsPerSecond: number; tasks: number; workers: number };

/** Outcome of an action, shown to the user and written to the audit log by the server. */
export interface ActionResult {
  ok: boolean;
  /** What happened, one line (e.g. "revoke sent; 2 workers replied"). */
  message: string;
  /** Per-worker replies, when the action was a broadcast. */
  replies?: Array<{ worker: string; ok: boolean; message: string }>;
}

/** What an operator or admin may do. The server maps roles to these and audits each call. */
export interface DashboardActions {
  revoke(taskId: string, options?: { terminate?: boolean; signal?: string }): Promise<ActionResult>;
  /** Send the task again with its original message (from the model's store or the dead-letter queue). */
  retry(taskId: string): Promise<ActionResult>;
  rateLimit(taskName: string, rate: string, worker?: string): Promise<ActionResult>;
  redriveDeadLetters(queue: string, ids?: string[]): Promise<ActionResult>;
  dropDeadLetters(queue: string, ids?: string[]): Promise<ActionResult>;
  pauseQueue(queue: string): Promise<ActionResult>;
  resumeQueue(queue: string): Promise<ActionResult>;
  shutdown(worker: string): Promise<ActionResult>;
  poolGrow(worker: string, n: number): Promise<ActionResult>;
  poolShrink(worker: string, n: number): Promise<ActionResult>;
  addConsumer(worker: string, queue: string): Promise<ActionResult>;
  cancelConsumer(worker: string, queue: string): Promise<ActionResult>;
}

/** Everything the server reads. */
export interface DashboardModel {
  workers(): WorkerView[];
  worker(hostname: string): WorkerView | undefined;
  tasks(query: TaskQuery): Promise<TaskPage>;
  task(id: string, options?: { clear?: boolean }): Promise<TaskDetail | undefined>;
  taskNames(): string[];
  queues(): Promise<QueueView[]>;
  deadLetters(queue: string, options?: { limit?: number; clear?: boolean }): Promise<DeadLetterView[]>;
  /** Chart points from `from` to now (epoch seconds), bucketed by `bucketSeconds` (default 60). */
  series(options: { from: number; bucketSeconds?: number; taskName?: string }): Promise<SeriesPoint[]>;
  /** Live updates; returns the unsubscribe function. */
  subscribe(listener: (update: LiveUpdate) => void): () => void;
  actions: DashboardActions;
  /**
   * Prometheus text exposition (queue depth, task counts and runtime histograms by
   * task and state, worker up, security-event counters), for `/metrics`.
   */
  metrics(): Promise<{ contentType: string; body: string }>;
  /** Ready when connected to the broker and receiving events. */
  health(): { live: boolean; ready: boolean; detail: string };
  /**
   * Counters of the event ingestion (optional: the server may show them on a
   * status page; benches read them). `lastLagSeconds`: from receiving the
   * oldest event of the last tick to writing it.
   */
  ingestion?(): IngestionStats;
  /** celeriac beat's shared state (leader, last runs); optional: a model without it has no Beat view. */
  beat?(): Promise<BeatView>;
  close(): Promise<void>;
}

/** celeriac beat's state as the dashboard shows it (times in epoch seconds). */
export interface BeatView {
  /** False when the store could not be opened or read (`detail` says why). */
  available: boolean;
  /** The schedule's name (`celeriac beat --name`). */
  namespace: string;
  /** Where the state lives (engine and redacted URL). */
  where?: string;
  detail?: string;
  /** The lease holder; absent when no beat holds a live lease. */
  leader?: { holder: string; token: number; expiresAt: number } | undefined;
  entries: BeatEntryView[];
}

/** One schedule entry's last run. */
export interface BeatEntryView {
  name: string;
  /** The scheduled time of the last tick sent. */
  lastRun: number;
  /** When its claim was recorded. */
  sentAt: number;
  taskId: string;
  /** Fencing token of the leader that sent it. */
  token: number;
  /** False when the leader stopped between claim and publish (that tick may not have been sent). */
  confirmed: boolean;
  total: number;
  skipped: number;
}

/** Counters of the event ingestion since the model started. */
export interface IngestionStats {
  /** Events read from the event exchange (valid ones). */
  received: number;
  /** Events refused as malformed. */
  malformed: number;
  /** Events dropped because ingestion fell behind (the receiver's buffer was full). */
  dropped: number;
  /** Task events applied to the store. */
  taskEvents: number;
  /** Events waiting for the next tick. */
  pending: number;
  /** Ticks written, and failed writes. */
  flushes: number;
  writeErrors: number;
  lastLagSeconds: number;
  maxLagSeconds: number;
  /** Events per second over the last second. */
  eventsPerSecond: number;
}

/** Options of `createDashboardModel` (src/dashboard/model/index.ts). */
export interface DashboardModelOptions {
  /** A connected client app (`createApp`): events, control and broker access go through it. */
  app: import('../../client/app.ts').App;
  /** Queues to show even before a worker reports consuming them. */
  queues?: readonly string[];
  /** Where task history lives: bounded memory (Flower-like) or the embedded SQLite with retention. */
  store?: { kind: 'memory'; maxTasks?: number } | { kind: 'sqlite'; path: string; retentionDays?: number; maxTasks?: number };
  /** How often `inspect` (stats, active, reserved, registered, active_queues) is refreshed, ms (default 10,000). */
  inspectIntervalMs?: number;
  /** celeriac beat's state to show (default: the `default` schedule, in the store `openBeatStore` picks); false: no Beat view. */
  beat?: false | import('./beat.ts').BeatReaderOptions;
  /** Stops the model's background work. */
  signal?: AbortSignal;
}
