/**
 * The worker's public types: its options, the handle `createWorker`
 * returns, its counters, and the task events a prefork child reports.
 */
import type { Logger } from '../observability/logging.ts';
import type { LossKind } from './loss-ledger.ts';
import type { WorkerRuntime } from './runtime.ts';

export interface WorkerOptions {
  /** The app whose tasks this worker runs (an `App`; the worker sees it through `WorkerRuntime`). */
  app: WorkerRuntime;
  /** Module whose `app` (or default) export is the app: required by the prefork pool, which loads it in each child process. */
  appModule?: string;
  /** Queues to consume (default: `taskDefaultQueue`). */
  queues?: string[];
  /** Tasks running at once (default: number of CPUs). */
  concurrency?: number;
  /** Prefetch = concurrency × this (default 4, as Celery). */
  prefetchMultiplier?: number;
  /**
   * `prefork` (default): child processes consume and run the tasks, under a
   * supervisor that restarts them and enforces hard time limits;
   * `solo`: everything in this process (no isolation; for tests and embedding).
   */
  pool?: 'prefork' | 'solo';
  /** Child processes of the prefork pool (default: CPUs − 1, at least 1, at most the concurrency); the concurrency is split between them. */
  processes?: number;
  /** V8 heap limit per child process, MiB. */
  maxMemoryPerChildMb?: number;
  /**
   * V8 young-generation semi-space of each child process, MiB (default:
   * Node's, which grows to 16 under load). Smaller trades throughput for
   * memory: at 2 MiB a child's peak RSS on a 200k no-op drain fell by about
   * 30 MiB and its drain rate by 10–30 %, GC taking a quarter of its time
   * (bench/README.md). Without this option, a `--max-semi-space-size` in
   * NODE_OPTIONS (which children inherit) applies.
   */
  youngGenerationMbPerChild?: number;
  /** Node name, e.g. `worker1@host` (default `celeriac<pid>@<hostname>`). */
  nodeName?: string;
  /**
   * Prefork: a supervisor left with no running child process for this long
   * (every replacement failing to start) stops and its `done` rejects, so
   * the CLI exits non-zero and a process manager restarts it (default 60 s).
   */
  maxEmptyPoolMs?: number;
  /** Grace for running tasks at shutdown, ms (default 30 s); then they are killed and requeued (acksLate). */
  shutdownTimeoutMs?: number;
  /** Aborting it starts a graceful shutdown. */
  signal?: AbortSignal;
  logger?: Logger;
  /** Send task events (`-E`; default: the `workerSendTaskEvents` setting). */
  taskEvents?: boolean;
  /** Send worker-online/heartbeat/offline events (default true, as Celery; `--without-heartbeat` turns them off). */
  heartbeat?: boolean;
  /** Heartbeat interval, seconds (default 2, as Celery). */
  heartbeatIntervalS?: number;
  /**
   * Internal (prefork children): told when tasks start and finish, for the
   * supervisor's watchdog. 'started' events of a batch arrive in one call
   * made before any of those tasks runs, so the hook must deliver them
   * synchronously (the supervisor must know before the code runs).
   */
  onTaskEvents?: (events: TaskEvent[]) => void;
  /**
   * Answer Celery's remote control (inspect, revoke, shutdown, …) on the
   * broker's pidbox (default: on, as in Celery, except in prefork children).
   */
  remoteControl?: boolean;
  /** Internal: false in prefork children, whose supervisor announces the worker. */
  announce?: boolean;
  /** Internal (prefork children): a lost run counted here (a result not settled) or a FAILURE stored for good, for the supervisor's ledger. */
  onLoss?: (id: string, kind: LossKind | 'final') => void;
}

/** Start and end of a task's execution, as a prefork child reports them to its supervisor. */
export type TaskEvent =
  | {
      type: 'started'; id: string; task: string; tag: string; lateAck: boolean; hardLimitMs: number | undefined; group: string | null; parentId: string | null;
      /** The message's reply route, sent only with `rpc://` results (the supervisor's FAILURE for a lost task goes there). */
      replyTo?: string; correlationId?: string;
      /** JSON of the canvas part of the request (worker/canvas/lost.ts), only when it has one. */
      canvas?: string;
    }
  | { type: 'finished'; id: string; tag: string };

/** What `createWorker` returns, whichever pool runs the tasks. */
export interface WorkerHandle {
  readonly nodeName: string;
  /** Connect and begin consuming (and start child processes for prefork). */
  start(): Promise<void>;
  /** Graceful shutdown. */
  stop(): Promise<void>;
  /** Resolves once the worker has stopped. */
  readonly done: Promise<void>;
  /** Counters since start. */
  stats(): WorkerStats;
  /**
   * Re-read broker and backend credentials from their variables or secret
   * files (what SIGHUP does) without stopping; in prefork, in every child.
   */
  reload(options?: { announce?: boolean }): Promise<{ broker: boolean; backend: boolean } | void>;
}

export interface WorkerStats {
  nodeName: string;
  active: number;
  held: number;
  processed: number;
  succeeded: number;
  failed: number;
  retried: number;
  revoked: number;
  rejected: number;
  byTask: Record<string, number>;
  /** Prefork: the pool's target size and the child processes now up and consuming. */
  pool?: { target: number; live: number };
}
