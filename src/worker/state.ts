/**
 * The state one worker process shares between its parts (intake,
 * scheduling, outcomes, settle), and the job each delivery becomes.
 */
import type { ResultStore } from '../client/results.ts';
import type { TaskDefinition } from '../client/task.ts';
import type { StoredRecord } from '../core/backend.ts';
import type { Consumer, Delivery } from '../core/broker.ts';
import type { RequestInfo } from '../core/task-context.ts';
import type { Logger } from '../observability/logging.ts';
import type { BodyDecoder, TaskRequest } from '../protocol/task-message.ts';
import type { WorkerEvents } from './events.ts';
import type { ExecJob } from './execute.ts';
import type { LossKind, LossLedger } from './loss-ledger.ts';
import type { Pool } from './pool/types.ts';
import type { TokenBucket } from './rate-limit.ts';
import type { WorkerRuntime } from './runtime.ts';
import type { RevokedSet } from './control/revoked.ts';
import type { TaskEvent } from './types.ts';

/** One delivery on its way through the worker. */
export interface Job {
  delivery: Delivery;
  req: TaskRequest;
  def: TaskDefinition;
  acksLate: boolean;
  /** Acked, given back or dead-lettered: settled (or being settled) for good. */
  acked: boolean;
  /** A 'started' task event was sent (so a 'finished' one follows). */
  reported?: boolean;
  /** Set once the job is prepared to run. */
  exec?: Execution;
  hardMs?: number;
  /** A suspect of a lost run: it runs alone in this process, so a new loss is attributed for certain. */
  isolate?: boolean;
  /** Given up at the shutdown deadline (settled as lost); a late outcome is ignored. */
  lost?: boolean;
  /** Revoked with terminate: the signal's number (for the `task-revoked` event). */
  terminatedSignum?: number | null;
}

/** Counters since start. */
export interface Counters {
  processed: number;
  succeeded: number;
  failed: number;
  retried: number;
  revoked: number;
  rejected: number;
}

/** Everything the parts of one worker read and change. */
export interface WorkerState {
  readonly rt: WorkerRuntime;
  readonly logger: Logger;
  readonly nodeName: string;
  /** Tasks running at once; remote control's pool_grow/pool_shrink change it. */
  concurrency: number;
  /** concurrency × prefetch multiplier (remote control's pool_grow/pool_shrink change it). */
  basePrefetch: number;
  readonly pool: Pool;
  /** Log each task received/succeeded at info, as Celery does (checked once: the lines are on the hot path). */
  readonly logTasks: boolean;
  /** Prefork children: task starts and ends for the supervisor. */
  readonly onTaskEvents: ((events: TaskEvent[]) => void) | undefined;
  /** Prefork children: lost runs and final FAILUREs for the supervisor's ledger. */
  readonly onLoss: ((id: string, kind: LossKind | 'final') => void) | undefined;
  /** Lost runs by task id (loss-ledger.ts): the supervisor's copy in a prefork child, this worker's own in solo. */
  readonly ledger: LossLedger;
  readonly counters: Counters;
  readonly byTask: Record<string, number>;
  consumer: Consumer | undefined;
  /** Revoked task ids honoured at intake and before a task runs (control/revoked.ts). */
  readonly revoked: RevokedSet;
  /** Jobs running now and when each started (ms), for `inspect active`. */
  readonly running: Map<Job, number>;
  store: ResultStore | undefined;
  decodeBody: BodyDecoder | undefined;
  stopping: boolean;
  /** Celery events (events.ts): undefined when this process sends none. */
  events: WorkerEvents | undefined;

  // scheduling
  readonly pending: Job[];
  readonly held: Map<Job, NodeJS.Timeout>;
  heldEta: number;
  readonly buckets: Map<string, TokenBucket>;
  active: number;
  jobSeq: number;
  /** drain() is running (it is re-entered by tasks that finish synchronously). */
  draining: boolean;
  drainQueued: boolean;
  /** An isolated job is running: nothing else starts until it ends. */
  isolating: boolean;
  /** An isolated job waits for running and settling work to end. */
  isolationWaiting: boolean;
  /** Start queued jobs while there is room (scheduling.ts; settling calls it when the worker may be idle). */
  readonly drain: () => void;

  // settle
  /** Settling work in flight (shutdown waits for it). */
  finalizing: number;
  /** Successful jobs of this turn whose results go out in one store call, then one ack batch. */
  settleJobs: Job[];
  settleRecords: StoredRecord[];
  settleScheduled: boolean;
}

/**
 * One execution handed to the pool. Its `request` (what `currentTask()`
 * shows) is built on first read: most tasks never look at it.
 */
export class Execution implements ExecJob {
  private cached: RequestInfo | undefined;
  /** Set by progress.ts when the worker keeps results. */
  updateState?: (state: string, meta: unknown) => Promise<boolean>;
  /** Set by execution.ts when the worker keeps results (a chord join needs them). */
  addToChord?: ExecJob['addToChord'];
  constructor(
    readonly jobId: string,
    readonly task: string,
    readonly args: unknown[],
    readonly softTimeLimitMs: number | undefined,
    private readonly nodeName: string,
    readonly job: Job,
    private readonly kwargs: Record<string, unknown>,
  ) {}

  get request(): RequestInfo {
    return (this.cached ??= requestInfo(this.job, this.kwargs, this.nodeName));
  }
}

/** The request facts a task sees through `currentTask().request`. */
export function requestInfo(job: Job, kwargs: Record<string, unknown>, hostname: string): RequestInfo {
  const { req, delivery } = job;
  return {
    id: req.id,
    task: req.task,
    retries: req.retries,
    eta: req.eta,
    expires: req.expires,
    rootId: req.rootId,
    parentId: req.parentId,
    group: req.group,
    groupIndex: req.groupIndex,
    origin: req.origin,
    correlationId: req.correlationId,
    replyTo: req.replyTo,
    hostname,
    deliveryInfo: { queue: delivery.queue, priority: req.priority, redelivered: delivery.redelivered },
    timeLimit: req.timeLimit,
    args: req.args,
    kwargs,
    headers: req.headers,
  };
}

/** Tell the supervisor a reported job has ended. */
export function reportFinished(w: WorkerState, job: Job): void {
  if (job.reported) w.onTaskEvents?.([{ type: 'finished', id: job.req.id, tag: job.delivery.deliveryTag }]);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
