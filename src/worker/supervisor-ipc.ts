/**
 * Messages between a prefork supervisor and its child processes. Each child
 * runs a whole Worker (consumer and executor); the supervisor only starts,
 * watches, stops and, when one dies, recovers for it.
 */
import type { TaskEvent, WorkerStats } from './worker.ts';

/** The serializable part of WorkerOptions a child needs. */
export interface ChildWorkerOptions {
  queues: string[] | undefined;
  concurrency: number;
  prefetchMultiplier: number | undefined;
  nodeName: string;
  shutdownTimeoutMs: number | undefined;
}

/** Supervisor → child. */
export type ToChild =
  | { t: 'init'; appModule: string; options: ChildWorkerOptions }
  | { t: 'stop' }
  /** SIGHUP: re-read credentials from the environment and secret files. */
  | { t: 'reload' };

/** Child → supervisor. */
export type FromChild =
  | { t: 'ready'; pid: number; owner: string | undefined }
  | { t: 'init-error'; message: string }
  | { t: 'events'; events: TaskEvent[] }
  | { t: 'stats'; stats: WorkerStats }
  | { t: 'stopped' };
