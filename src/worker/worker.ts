/**
 * The worker core: consumes task messages, holds ETA tasks, applies expiry
 * and rate limits, runs tasks, stores results, sends follow-ups (retries,
 * chains, callbacks) and settles every delivery exactly once.
 *
 * One `Worker` runs its tasks in its own process. `createWorker` with the
 * default prefork pool starts a supervisor instead, whose child processes
 * each run one `Worker` (see supervisor.ts): the tasks never run in the
 * supervisor, and every child consumes for itself, so no single process
 * limits throughput.
 *
 * Ack semantics are Celery's: early ack (when the task starts) by default;
 * with acksLate the message is acked after the result is stored, and a task
 * whose process dies is redelivered when rejectOnWorkerLost is on.
 */
import { availableParallelism } from 'node:os';
import type { App } from '../client/app.ts';
import { ResultEncodeError, type ResultStore } from '../client/results.ts';
import type { StoredRecord } from '../core/backend.ts';
import type { Consumer, Delivery, MalformedDelivery } from '../core/broker.ts';
import { ContentDisallowedError, DecodeError, ValidationError } from '../errors.ts';
import { redactAll, redactValue } from '../config/redact.ts';
import type { Logger } from '../observability/logging.ts';
import { recordSecurityEvent } from '../observability/security-events.ts';
import { defaultNodeName } from '../protocol/ids.ts';
import { buildResultMeta, errorToExceptionInfo, type ExceptionInfo, type ExtendedFields, type ResultMeta } from '../protocol/result-meta.ts';
import { parseTaskMessage, peekTaskHeaders, type BodyDecoder, type TaskRequest } from '../protocol/task-message.ts';
import { reprArgs, reprKwargs } from '../protocol/pyrepr.ts';
import { bindArguments, parseRateLimit, validateArguments, type TaskDefinition } from '../client/task.ts';
import type { RequestInfo } from './context.ts';
import type { ExecJob, ExecOutcome } from './execute.ts';
import { childTuple, failureFollowUps, retryMessageInput, successFollowUps, type FollowUp } from './follow-ups.ts';
import { LossLedger, lossKey, lossReason, lostRuns, pullShared, pushShared, type LossKind } from './loss-ledger.ts';
import { createSoloPool } from './pool/solo.ts';
import type { Pool } from './pool/types.ts';
import { TokenBucket } from './rate-limit.ts';
import { decideRetry } from './retry-policy.ts';
import { Supervisor } from './prefork/supervisor.ts';

export interface WorkerOptions {
  app: App;
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
  /**
   * Internal (prefork children): told when tasks start and finish, for the
   * supervisor's watchdog. 'started' events of a batch arrive in one call
   * made before any of those tasks runs, so the hook must deliver them
   * synchronously (the supervisor must know before the code runs).
   */
  onTaskEvents?: (events: TaskEvent[]) => void;
  /** Internal: false in prefork children, whose supervisor announces the worker. */
  announce?: boolean;
  /** Internal (prefork children): a lost run counted here (a result not settled) or a FAILURE stored for good, for the supervisor's ledger. */
  onLoss?: (id: string, kind: LossKind | 'final') => void;
}

/** Start and end of a task's execution, as a prefork child reports them to its supervisor. */
export type TaskEvent =
  | { type: 'started'; id: string; task: string; tag: string; lateAck: boolean; hardLimitMs: number | undefined; group: string | null; parentId: string | null }
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

interface Job {
  delivery: Delivery;
  req: TaskRequest;
  def: TaskDefinition;
  acksLate: boolean;
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
}

/**
 * One execution handed to the pool. Its `request` (what `currentTask()`
 * shows) is built on first read: most tasks never look at it.
 */
class Execution implements ExecJob {
  private cached: RequestInfo | undefined;
  constructor(
    readonly jobId: string,
    readonly task: string,
    readonly args: unknown[],
    readonly softTimeLimitMs: number | undefined,
    private readonly worker: Worker,
    readonly job: Job,
    private readonly kwargs: Record<string, unknown>,
  ) {}

  get request(): RequestInfo {
    return (this.cached ??= this.worker.requestInfo(this.job, this.kwargs));
  }
}

const MAX_TIMER_MS = 2 ** 31 - 1;
/** How long a prefork child holds a redelivered message before judging it (its supervisor's ledger update may be on its way). */
const REDELIVERY_SETTLE_MS = 250;
/** Waits between attempts to store a batch of results before its messages are given back. */
const SETTLE_RETRY_DELAYS_MS = [250, 1000, 3000];
/** After the shutdown timeout: the longest wait for results and acks already on their way. */
const SHUTDOWN_SETTLE_MS = 2000;

/**
 * Create a worker; call `start()` to begin consuming. With the default
 * prefork pool this is a supervisor of child processes (which needs
 * `appModule`); with `pool: 'solo'` everything runs in this process.
 */
export function createWorker(options: WorkerOptions): WorkerHandle {
  return (options.pool ?? 'prefork') === 'prefork' ? new Supervisor(options) : new Worker(options);
}

/** The consumer and executor of one process (see the module comment). */
export class Worker implements WorkerHandle {
  readonly nodeName: string;
  private readonly app: App;
  private readonly logger: Logger;
  private readonly queues: string[];
  private readonly concurrency: number;
  private readonly basePrefetch: number;
  private readonly pool: Pool;
  private readonly shutdownTimeoutMs: number;
  private consumer: Consumer | undefined;
  private store: ResultStore | undefined;
  private readonly pending: Job[] = [];
  private readonly held = new Map<Job, NodeJS.Timeout>();
  private heldEta = 0;
  private active = 0;
  private finalizing = 0;
  private readonly buckets = new Map<string, TokenBucket>();
  private stopping = false;
  private stopPromise: Promise<void> | undefined;
  private resolveDone!: () => void;
  /** Resolves once the worker has stopped. */
  readonly done: Promise<void>;
  private readonly counters = { processed: 0, succeeded: 0, failed: 0, retried: 0, revoked: 0, rejected: 0 };
  private readonly byTask: Record<string, number> = {};
  private readonly signal: AbortSignal | undefined;
  /** Log each task received/succeeded at info, as Celery does (checked once: the lines are on the hot path). */
  private readonly logTasks: boolean;
  private jobSeq = 0;
  private decodeBody: BodyDecoder | undefined;
  /** drain() is running (it is re-entered by tasks that finish synchronously). */
  private draining = false;
  private drainQueued = false;
  /** Successful jobs of this turn whose results go out in one store call, then one ack batch. */
  private settleJobs: Job[] = [];
  private settleRecords: StoredRecord[] = [];
  private settleScheduled = false;
  /** Lost runs by task id (loss-ledger.ts): the supervisor's copy in a prefork child, this worker's own in solo. */
  readonly ledger = new LossLedger();
  private readonly onLoss: ((id: string, kind: LossKind | 'final') => void) | undefined;
  /** An isolated job is running: nothing else starts until it ends. */
  private isolating = false;
  /** An isolated job waits for running and settling work to end. */
  private isolationWaiting = false;

  constructor(options: WorkerOptions) {
    this.app = options.app;
    this.logger = options.logger ?? options.app.logger;
    this.nodeName = options.nodeName ?? defaultNodeName();
    this.queues = options.queues?.length ? options.queues : [this.app.settings.taskDefaultQueue];
    this.concurrency = Math.max(1, options.concurrency ?? availableParallelism());
    this.basePrefetch = this.concurrency * (options.prefetchMultiplier ?? 4);
    this.shutdownTimeoutMs = options.shutdownTimeoutMs ?? 30_000;
    this.signal = options.signal;
    this.logTasks = this.logger.isLevelEnabled('info');
    this.done = new Promise((r) => (this.resolveDone = r));
    this.pool = createSoloPool(this.app.registry);
    this.onTaskEvents = options.onTaskEvents;
    this.onLoss = options.onLoss;
    this.announce = options.announce ?? true;
  }

  private readonly onTaskEvents: ((events: TaskEvent[]) => void) | undefined;
  private readonly announce: boolean;

  /** Identifies this worker's deliveries at the broker (for recovery by a supervisor). */
  get consumerOwner(): string | undefined {
    return this.consumer?.owner;
  }

  /** Start the pool, connect, and begin consuming. */
  async start(): Promise<void> {
    const broker = await this.app.broker();
    await this.app.security.prepare?.();
    this.store = await this.app.resultStore();
    await this.pool.start();
    this.consumer = await broker.consume(
      this.queues,
      { prefetch: this.basePrefetch, onMalformed: (m) => this.onMalformed(m), onError: (err) => this.logger.warn({ err }, 'broker error; recovering') },
      (d) => this.onDelivery(d),
    );
    this.signal?.addEventListener('abort', () => void this.stop(), { once: true });
    if (this.signal?.aborted) void this.stop();
    if (this.announce) {
      this.logger.info(
        { node: this.nodeName, queues: this.queues, concurrency: this.concurrency, pool: this.pool.kind, tasks: [...this.app.registry.keys()] },
        `worker ${this.nodeName} ready`,
      );
    }
  }

  async reload(options: { announce?: boolean } = {}): Promise<{ broker: boolean; backend: boolean }> {
    const c = await this.app.reloadCredentials(options);
    if (options.announce !== false) this.logger.info({ ...c }, c.broker || c.backend ? 'credentials reloaded' : 'credentials unchanged');
    return c;
  }

  /** Counters since start. */
  stats(): WorkerStats {
    return { nodeName: this.nodeName, active: this.active, held: this.held.size, ...this.counters, byTask: { ...this.byTask } };
  }

  // ── intake ───────────────────────────────────────────────────────────

  private onMalformed(m: MalformedDelivery): void {
    this.counters.rejected++;
    this.logger.error({ id: m.id, queue: m.queue, reason: m.reason }, `malformed message dead-lettered: ${m.reason}`);
    recordSecurityEvent('malformed_message', { messageId: m.id, queue: m.queue, reason: m.reason }, this.logger);
  }

  private onDelivery(delivery: Delivery): void {
    if (this.stopping) {
      void delivery.reject(true).catch((err: unknown) => this.logger.error({ err }, 'requeue failed'));
      return;
    }
    let req: TaskRequest;
    try {
      req = parseTaskMessage(delivery.message, (this.decodeBody ??= this.app.decodeBody));
    } catch (err) {
      this.refuse(delivery, err);
      return;
    }
    const admit = this.app.security.admit;
    if (!admit) {
      this.accept(delivery, req);
      return;
    }
    admit(delivery.message, req, delivery).then(
      (reason) => (reason === undefined ? this.accept(delivery, req) : this.refuse(delivery, new DecodeError(reason, { code: 'ERR_REFUSED' }))),
      (err: unknown) => {
        // The check itself failed (e.g. its store is down): give the message back rather than guess.
        this.logger.error({ err, id: req.id }, 'message admission check failed; requeueing');
        void delivery.reject(true).catch(() => undefined);
      },
    );
  }

  private accept(delivery: Delivery, req: TaskRequest): void {
    const def = this.app.registry.get(req.task);
    if (!def?.fn) {
      this.unknownTask(delivery, req);
      return;
    }
    const acksLate = def.options.acksLate ?? this.app.settings.taskAcksLate;
    const job: Job = { delivery, req, def, acksLate, acked: false, reported: false, exec: undefined, hardMs: undefined };
    if (this.logTasks) this.logger.info({ task: req.task, id: req.id }, 'task received');
    if (this.expired(job)) return;
    if (req.eta !== null && req.eta > Date.now()) {
      this.hold(job, req.eta, true);
      return;
    }
    // A redelivered message may be a task whose runs were lost elsewhere: read the shared ledger first. In a
    // prefork child it may also be the task that just killed a sibling process (RabbitMQ gives it back as soon
    // as that process's connection drops, maybe before the supervisor's ledger update arrives): wait a moment.
    if (delivery.redelivered && !this.ledger.get(req.id) && (this.onTaskEvents || this.store)) {
      if (this.store) void pullShared(this.ledger, this.store.backend, [req.id]).catch(() => undefined);
      this.hold(job, Date.now() + REDELIVERY_SETTLE_MS, false);
      return;
    }
    this.admit(job);
  }

  /** Dead-letter a message that cannot be run, log it with its id and reason. */
  private refuse(delivery: Delivery, err: unknown): void {
    const { id, task } = peekTaskHeaders(delivery.message);
    const reason =
      err instanceof ContentDisallowedError
        ? `content type ${JSON.stringify(err.contentType)} not accepted`
        : err instanceof DecodeError
          ? err.reason
          : err instanceof Error
            ? err.message
            : String(err);
    this.counters.rejected++;
    this.logger.error({ id, task, queue: delivery.queue, reason, code: (err as { code?: string }).code }, `rejected message ${id ?? '(no id)'}: ${reason}`);
    delivery.deadLetter(reason).catch((e: unknown) => this.logger.error({ err: e, id }, 'dead-lettering failed'));
  }

  private unknownTask(delivery: Delivery, req: TaskRequest): void {
    this.counters.rejected++;
    this.logger.error({ id: req.id, task: req.task, queue: delivery.queue }, `received unregistered task ${JSON.stringify(req.task)}; message dead-lettered`);
    const meta = buildResultMeta({
      taskId: req.id,
      status: 'FAILURE',
      result: { exc_type: 'NotRegistered', exc_message: [req.task], exc_module: 'celery.exceptions' },
      traceback: null,
      groupId: req.group,
      parentId: req.parentId,
    });
    void this.storeMeta(meta)
      .then(() => delivery.deadLetter(`unregistered task ${req.task}`))
      .catch((err: unknown) => this.logger.error({ err, id: req.id }, 'could not dead-letter unregistered task'));
  }

  /** Revoke the task if it expired. Returns true when it did. */
  private expired(job: Job): boolean {
    const { req } = job;
    if (req.expires === null || req.expires > Date.now()) return false;
    this.counters.revoked++;
    this.logger.info({ id: req.id, task: req.task }, `task ${req.task}[${req.id}] expired; revoked`);
    const meta = buildResultMeta({
      taskId: req.id,
      status: 'REVOKED',
      result: { exc_type: 'TaskRevokedError', exc_message: ['expired'], exc_module: 'celery.exceptions' },
      traceback: null,
      groupId: req.group,
      parentId: req.parentId,
    });
    this.finalize(job, async () => {
      if (!req.ignoreResult) await this.storeMeta(meta);
      await this.ackOnce(job);
    });
    return true;
  }

  /** Keep a message until `until`; ETA holds widen the prefetch window like Celery's qos increments. */
  private hold(job: Job, until: number, eta: boolean): void {
    if (eta) {
      this.heldEta++;
      this.consumer?.setPrefetch(this.basePrefetch + this.heldEta);
    }
    const wake = (): void => {
      const left = until - Date.now();
      if (left > 0) {
        this.held.set(job, setTimeout(wake, Math.min(left, MAX_TIMER_MS)));
        return;
      }
      this.held.delete(job);
      if (eta) {
        this.heldEta--;
        this.consumer?.setPrefetch(this.basePrefetch + this.heldEta);
      }
      if (this.stopping) return;
      if (!this.expired(job)) this.admit(job);
    };
    this.held.set(job, setTimeout(wake, Math.min(Math.max(0, until - Date.now()), MAX_TIMER_MS)));
  }

  /** Apply the rate limit, then queue for execution. */
  private admit(job: Job): void {
    const rate = job.def.options.rateLimit;
    if (rate) {
      let bucket = this.buckets.get(job.def.name);
      if (!bucket) {
        bucket = new TokenBucket(parseRateLimit(rate));
        this.buckets.set(job.def.name, bucket);
      }
      const wait = bucket.take();
      if (wait > 0) {
        this.hold(job, Date.now() + wait, false);
        return;
      }
    }
    this.pending.push(job);
    // Deliveries arrive in batches (one reserve call): start them together, in one pass.
    if (!this.drainQueued) {
      this.drainQueued = true;
      queueMicrotask(() => {
        this.drainQueued = false;
        this.drain();
      });
    }
  }

  /**
   * Start queued jobs while there is room. Jobs taken in one pass are
   * announced to the supervisor together, before any of them runs; a task
   * that finishes synchronously frees its slot at once (re-entering here is
   * a no-op: the loop below picks the slot up).
   */
  private drain(): void {
    if (this.draining) return;
    this.draining = true;
    try {
      let waitForIdle = false;
      while (this.active < this.concurrency && this.pending.length > 0 && !this.stopping && !this.isolating && !waitForIdle) {
        const batch: Job[] = [];
        while (this.active < this.concurrency && this.pending.length > 0 && !this.stopping && !this.isolating) {
          const job = this.pending.shift()!;
          this.active++;
          if (!this.prepare(job)) {
            this.active--;
            continue;
          }
          if (job.isolate) {
            if (this.active > 1 || batch.length > 0 || this.finalizing > 0) {
              // Wait until nothing else runs or settles (the supervisor must see it alone); freeSlot or the
              // last settlement drains again.
              this.active--;
              this.pending.unshift(job);
              waitForIdle = true;
              this.isolationWaiting = true;
              break;
            }
            this.isolating = true;
          }
          batch.push(job);
        }
        if (batch.length > 0) this.launch(batch);
      }
    } finally {
      this.draining = false;
    }
  }

  // ── execution ────────────────────────────────────────────────────────

  /** Check expiry and arguments and build the execution; false when the job was settled instead. */
  private prepare(job: Job): boolean {
    const { req, def } = job;
    if (job.delivery.stale) {
      this.dropStale(job);
      return false;
    }
    if (this.expired(job)) return false;
    if (this.ledger.size > 0 && job.delivery.redelivered && !this.judgeLosses(job)) return false;
    let args: unknown[];
    let kwargs: Record<string, unknown>;
    try {
      ({ args, kwargs } = validateArguments(def, req.args, req.kwargs));
      args = bindArguments(def, args, kwargs);
    } catch (err) {
      const exc: ExceptionInfo =
        err instanceof ValidationError && !def.options.schema
          ? { exc_type: 'TypeError', exc_message: [err.message], exc_module: 'builtins' }
          : errorToExceptionInfo(err);
      // Received and ended (as a failure) without running: counted as processed, so the counters add up.
      this.counters.processed++;
      this.finalize(job, () => this.onFailure(job, { kind: 'failure', exc, traceback: null, runtimeMs: 0 }));
      return false;
    }
    const [hard, soft] = this.limits(job);
    job.hardMs = hard !== undefined ? hard * 1000 : undefined;
    job.exec = new Execution(String(++this.jobSeq), def.name, args, soft !== undefined ? soft * 1000 : undefined, this, job, kwargs);
    return true;
  }

  /**
   * A redelivered message whose earlier runs were lost (loss-ledger.ts):
   * past the limit it is dead-lettered with one FAILURE record; one whose
   * FAILURE is already stored is dead-lettered without running; a suspect
   * runs alone. Returns false when the job was settled instead of run.
   */
  private judgeLosses(job: Job): boolean {
    const { req, def } = job;
    const entry = this.ledger.get(req.id);
    if (!entry) return true;
    const reason = lossReason(entry);
    if (entry.final) {
      this.counters.rejected++;
      this.logger.warn({ id: req.id, task: req.task }, `task ${req.task}[${req.id}] came back after its FAILURE was stored (${reason}); message dead-lettered`);
      this.app.security.released?.(job.delivery.message);
      job.acked = true;
      // If the dead-letter queue cannot take it, it goes back (and comes here again): never held for ever.
      void job.delivery.deadLetter(reason).catch((err: unknown) => {
        this.logger.error({ err, id: req.id }, 'dead-lettering failed; the message goes back');
        return job.delivery.reject(true).catch(() => undefined);
      });
      return false;
    }
    if (lostRuns(entry) > (def.options.maxRedeliveries ?? this.app.settings.taskMaxRedeliveries)) {
      this.counters.rejected++;
      this.ledger.finalize(req.id);
      if (this.onLoss) this.onLoss(req.id, 'final');
      else if (this.store) void pushShared(this.ledger, this.store.backend, [req.id], this.app.settings.resultExpires).catch(() => undefined);
      this.logger.error({ id: req.id, task: req.task }, `task ${req.task}[${req.id}] ${reason}; message dead-lettered`);
      const exc: ExceptionInfo =
        entry.timeLimits > 0 && reason.startsWith('hard')
          ? { exc_type: 'TimeLimitExceeded', exc_message: [reason], exc_module: 'celery.exceptions' }
          : entry.settles > entry.crashes
            ? { exc_type: 'RedeliveryLimitExceeded', exc_message: [`task ${reason}; message dead-lettered`], exc_module: 'celeriac' }
            : { exc_type: 'WorkerLostError', exc_message: [`Worker exited prematurely: the task ${reason}; message dead-lettered`], exc_module: 'billiard.exceptions' };
      // A failure here gives the message back (finalize), to be judged again.
      this.finalize(job, async () => {
        await this.storeMeta(buildResultMeta({ taskId: req.id, status: 'FAILURE', result: exc, traceback: null, groupId: req.group, parentId: req.parentId }));
        await job.delivery.deadLetter(reason);
        job.acked = true;
      });
      return false;
    }
    if (entry.suspects > 0) job.isolate = true;
    return true;
  }

  /**
   * Before a task's code runs, the supervisor must know it is running (so it
   * can fail it if the process dies) and an early ack must have reached the
   * broker (a task that crashes its process must not come back).
   */
  private launch(batch: Job[]): void {
    if (this.onTaskEvents) {
      const events: TaskEvent[] = [];
      for (const job of batch) {
        job.reported = true;
        const { req } = job;
        events.push({ type: 'started', id: req.id, task: req.task, tag: job.delivery.deliveryTag, lateAck: job.acksLate, hardLimitMs: job.hardMs, group: req.group, parentId: req.parentId });
      }
      this.onTaskEvents(events);
    }
    for (const job of batch) {
      if (job.acksLate) this.run(job);
      else
        this.ackOnce(job).then(
          () => this.run(job),
          (err: unknown) => this.notRun(job, err),
        );
    }
  }

  /** The early ack failed: the task does not run and its message goes back. */
  private notRun(job: Job, err: unknown): void {
    const { req } = job;
    if (job.isolate) this.isolating = false;
    this.logger.error({ err, id: req.id }, 'could not ack before running; the message is given back');
    if (job.reported) this.onTaskEvents?.([{ type: 'finished', id: req.id, tag: job.delivery.deliveryTag }]);
    this.app.security.released?.(job.delivery.message);
    job.delivery.reject(true).then(
      () => this.freeSlot(),
      () => this.freeSlot(),
    );
  }

  private freeSlot(): void {
    this.active--;
    this.drain();
  }

  /**
   * The broker has taken this message back (its channel closed, its lease
   * ran out) and redelivers it: running it here too would run it twice.
   */
  private dropStale(job: Job): void {
    job.acked = true;
    this.logger.warn({ id: job.req.id, task: job.req.task }, `task ${job.req.task}[${job.req.id}] not started: the broker took its message back (connection lost, or its lease ran out) and delivers it again`);
    if (job.reported) this.onTaskEvents?.([{ type: 'finished', id: job.req.id, tag: job.delivery.deliveryTag }]);
    this.app.security.released?.(job.delivery.message);
    // Give it back if nobody has yet (a no-op where the broker already did: AMQP, or a Redis entry already restored).
    void job.delivery.reject(true).catch(() => undefined);
  }

  private run(job: Job): void {
    const { req, def } = job;
    // Checked again at the last moment: an early ack on a closed channel "succeeds" without reaching the broker.
    if (job.delivery.stale) {
      if (job.isolate) this.isolating = false;
      this.dropStale(job);
      this.freeSlot();
      return;
    }
    if ((def.options.trackStarted ?? this.app.settings.taskTrackStarted) && !def.options.ignoreResult) {
      void this.storeMeta(buildResultMeta({ taskId: req.id, status: 'STARTED', result: { pid: process.pid, hostname: this.nodeName }, groupId: req.group, parentId: req.parentId })).catch(
        (err: unknown) => this.logger.warn({ err, id: req.id }, 'could not store STARTED'),
      );
    }
    const outcome = this.pool.run(job.exec!, job.hardMs);
    if (outcome instanceof Promise) outcome.then((o) => this.ran(job, o));
    else this.ran(job, outcome);
  }

  private ran(job: Job, outcome: ExecOutcome): void {
    if (job.lost) return;
    const name = job.def.name;
    if (job.isolate) this.isolating = false;
    // It ran to an end: its lost runs are history (here and in the shared ledger).
    if (this.ledger.size > 0 && outcome.kind !== 'lost' && this.ledger.forget(job.req.id)) void this.store?.backend.forget(lossKey(job.req.id)).catch(() => undefined);
    this.counters.processed++;
    this.byTask[name] = (this.byTask[name] ?? 0) + 1;
    if (outcome.kind === 'success' && !hasSuccessFollowUps(job.req)) this.succeeded(job, outcome.value, outcome.runtimeMs);
    else this.finalize(job, () => this.onOutcome(job, outcome));
    this.freeSlot();
  }

  /**
   * A success with nothing to send after it (the common case): its result
   * joins this turn's store batch, and its ack the ack batch after that.
   */
  private succeeded(job: Job, value: unknown, runtimeMs: number): void {
    const { req } = job;
    if (this.logTasks) this.logger.info({ task: req.task, id: req.id, runtimeMs }, 'task succeeded');
    if (this.ignoresResult(job) || !this.store) {
      this.counters.succeeded++;
      this.finalize(job, () => this.ackOnce(job));
      return;
    }
    let record: StoredRecord;
    try {
      record = this.store.encode(this.successMeta(job, value, []));
    } catch (err) {
      // A result the serializer cannot encode: the task ends as FAILURE EncodeError (Celery's rule), never requeued.
      this.finalize(job, () => this.onEncodeError(job, err));
      return;
    }
    this.counters.succeeded++;
    this.settleJobs.push(job);
    this.settleRecords.push(record);
    if (!this.settleScheduled) {
      this.settleScheduled = true;
      this.finalizing++;
      process.nextTick(() => this.flushSettled());
    }
  }

  /** Store the batch's results in one call; once stored, ack them (late ack: never before the result is safe). */
  private flushSettled(): void {
    const jobs = this.settleJobs;
    const records = this.settleRecords;
    this.settleJobs = [];
    this.settleRecords = [];
    this.settleScheduled = false;
    this.storeWithRetry(records).then(
      () => this.ackSettled(jobs),
      (err: unknown) => {
        this.logger.error({ err, tasks: jobs.length }, 'could not store results; requeueing the messages (counted against their redelivery limit)');
        const requeues: Promise<unknown>[] = [];
        for (const job of jobs) {
          if (job.acked) continue;
          job.acked = true;
          this.countLoss(job.req.id, 'settle');
          this.app.security.released?.(job.delivery.message);
          requeues.push(job.delivery.reject(true).catch(() => undefined));
        }
        void Promise.all(requeues).then(() => this.settledBatch(jobs));
      },
    );
  }

  /**
   * Store results, retrying a failed store in place a few times (a backend
   * that blinks must not make tasks that ran run again); the message stays
   * unacked meanwhile, so nothing is lost if this process dies.
   */
  private async storeWithRetry(records: StoredRecord[]): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.store!.storeRecords(records);
      } catch (err) {
        if (attempt >= SETTLE_RETRY_DELAYS_MS.length || this.stopping) throw err;
        this.logger.warn({ err, tasks: records.length, attempt: attempt + 1 }, 'could not store results; retrying');
        await sleep(SETTLE_RETRY_DELAYS_MS[attempt]!);
      }
    }
  }

  /** Count a lost run in the ledger (and tell the supervisor, which keeps the node's ledger). */
  private countLoss(id: string, kind: LossKind): void {
    this.ledger.record(id, kind);
    // In a prefork child the supervisor keeps the node's ledger and writes the shared one; alone, write it here.
    if (this.onLoss) this.onLoss(id, kind);
    else if (this.store) void pushShared(this.ledger, this.store.backend, [id], this.app.settings.resultExpires).catch(() => undefined);
  }

  /** The result cannot be encoded: FAILURE EncodeError (as Celery records it), then ack. */
  private async onEncodeError(job: Job, err: unknown): Promise<void> {
    if (!(err instanceof ResultEncodeError)) throw err;
    return this.onFailure(job, { kind: 'failure', exc: { exc_type: 'EncodeError', exc_message: [err.reason], exc_module: 'kombu.exceptions' }, traceback: null, runtimeMs: 0 });
  }

  private ackSettled(jobs: Job[]): void {
    // Adapters that batch acks hand every ack of a turn the same promise: wait once per distinct promise.
    const waits: Promise<void>[] = [];
    let last: Promise<void> | undefined;
    for (const job of jobs) {
      if (job.acked) continue;
      job.acked = true;
      const p = job.delivery.ack();
      if (p !== last) waits.push((last = p));
    }
    const done = (): void => {
      const { settled, released } = this.app.security;
      if (settled) for (const job of jobs) (job.delivery.stale ? released : settled)?.(job.delivery.message);
      this.settledBatch(jobs);
    };
    if (waits.length === 0) done();
    else
      (waits.length === 1 ? waits[0]! : Promise.all(waits)).then(done, (err: unknown) => {
        this.logger.error({ err, tasks: jobs.length }, 'could not ack stored tasks; the broker will redeliver them');
        this.settledBatch(jobs);
      });
  }

  private settledBatch(jobs: Job[]): void {
    this.finalizing--;
    if (this.onTaskEvents) {
      const events: TaskEvent[] = [];
      for (const job of jobs) if (job.reported) events.push({ type: 'finished', id: job.req.id, tag: job.delivery.deliveryTag });
      if (events.length > 0) this.onTaskEvents(events);
    }
    this.afterSettling();
  }

  /** A suspect waits for this worker to be idle (nothing running or settling) before it runs alone. */
  private afterSettling(): void {
    if (this.isolationWaiting && this.finalizing === 0) {
      this.isolationWaiting = false;
      this.drain();
    }
  }

  /** [hard, soft] seconds: message header, then task options, then worker settings. */
  private limits(job: Job): [number | undefined, number | undefined] {
    const [h, s] = job.req.timeLimit;
    const o = job.def.options;
    return [h ?? o.timeLimit ?? this.app.settings.taskTimeLimit, s ?? o.softTimeLimit ?? this.app.settings.taskSoftTimeLimit];
  }

  /** The request facts a task sees through `currentTask().request`. */
  requestInfo(job: Job, kwargs: Record<string, unknown>): RequestInfo {
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
      hostname: this.nodeName,
      deliveryInfo: { queue: delivery.queue, priority: req.priority, redelivered: delivery.redelivered },
      timeLimit: req.timeLimit,
      args: req.args,
      kwargs,
    };
  }

  /** Run the settling work of a job, tracked so shutdown can wait for it. */
  private finalize(job: Job, work: () => Promise<void>): void {
    this.finalizing++;
    work()
      .catch(async (err: unknown) => {
        if (err instanceof ResultEncodeError && !job.acked) {
          try {
            return await this.onEncodeError(job, err);
          } catch (e) {
            err = e;
          }
        }
        this.logger.error({ err, id: job.req.id, task: job.req.task }, 'could not settle task; requeueing the message (counted against its redelivery limit)');
        if (!job.acked) {
          job.acked = true;
          this.countLoss(job.req.id, 'settle');
          this.app.security.released?.(job.delivery.message);
          await job.delivery.reject(true).catch(() => undefined);
        }
      })
      .finally(() => {
        this.finalizing--;
        if (job.reported) this.onTaskEvents?.([{ type: 'finished', id: job.req.id, tag: job.delivery.deliveryTag }]);
        this.afterSettling();
      });
  }

  private async onOutcome(job: Job, outcome: ExecOutcome): Promise<void> {
    switch (outcome.kind) {
      case 'success':
        return this.onSuccess(job, outcome.value, outcome.runtimeMs);
      case 'failure':
        return this.onFailure(job, outcome);
      case 'retry':
        return this.onRetry(job, outcome);
      case 'timeout':
        return this.onFailure(job, {
          kind: 'failure',
          exc: { exc_type: 'TimeLimitExceeded', exc_message: [outcome.limitSeconds], exc_module: 'celery.exceptions' },
          traceback: null,
          runtimeMs: outcome.runtimeMs,
        });
      case 'lost':
        return this.onLost(job, outcome.reason);
    }
  }

  private extended(job: Job): ExtendedFields | undefined {
    if (!this.app.settings.resultExtended) return undefined;
    const { req, delivery } = job;
    return { name: req.task, args: req.args, kwargs: req.kwargs, worker: this.nodeName, retries: req.retries, queue: delivery.queue };
  }

  /** The message, the task or the settings say not to store its result. */
  private ignoresResult(job: Job): boolean {
    return job.req.ignoreResult || (job.def.options.ignoreResult ?? false) || this.app.settings.taskIgnoreResult;
  }

  private successMeta(job: Job, value: unknown, children: ReturnType<typeof childTuple>[]): ResultMeta {
    const { req } = job;
    return buildResultMeta({ taskId: req.id, status: 'SUCCESS', result: value === undefined ? null : value, children, groupId: req.group, parentId: req.parentId, extended: this.extended(job) });
  }

  private async onSuccess(job: Job, value: unknown, runtimeMs: number): Promise<void> {
    const { req } = job;
    // Callbacks and the chain's next step go out before the result is stored, so `children` names them.
    const follow = hasSuccessFollowUps(req) ? successFollowUps(req, value) : [];
    if (follow.length > 0) await this.publishFollowUps(follow);
    if (!this.ignoresResult(job)) await this.storeMeta(this.successMeta(job, value, follow.map((f) => childTuple(f.input.id))));
    // Counted once the outcome is stored: a result that cannot be encoded ends as a failure instead.
    this.counters.succeeded++;
    if (this.logTasks) this.logger.info({ task: req.task, id: req.id, runtimeMs }, 'task succeeded');
    await this.ackOnce(job);
  }

  private async onFailure(job: Job, outcome: Extract<ExecOutcome, { kind: 'failure' }>): Promise<void> {
    const { req } = job;
    this.logger.error(
      { id: req.id, task: req.task, exc_type: outcome.exc.exc_type, runtimeMs: outcome.runtimeMs },
      `task ${req.task}[${req.id}] raised ${outcome.exc.exc_type}: ${String(outcome.exc.exc_message[0] ?? '')}`,
    );
    const ignored = this.ignoresResult(job);
    if (!ignored || this.app.settings.taskStoreErrorsEvenIfIgnored) {
      await this.storeMeta(
        buildResultMeta({
          taskId: req.id,
          status: 'FAILURE',
          result: redactException(outcome.exc),
          traceback: outcome.traceback === null ? null : redactAll(outcome.traceback),
          groupId: req.group,
          parentId: req.parentId,
          extended: this.extended(job),
        }),
      );
    }
    // Counted once its record is stored (a settle that fails and is retried is counted once).
    this.counters.failed++;
    await this.publishFollowUps(failureFollowUps(req));
    await this.ackOnce(job);
  }

  private async onRetry(job: Job, outcome: Extract<ExecOutcome, { kind: 'retry' }>): Promise<void> {
    const { req, def } = job;
    const decision = decideRetry(def.options, this.app.settings, req.retries, outcome.options, Date.now());
    if (!decision.retry) {
      const exc: ExceptionInfo = outcome.options.exc ?? {
        exc_type: 'MaxRetriesExceededError',
        exc_message: [`Can't retry ${req.task}[${req.id}] args:${reprArgs(req.args)} kwargs:${reprKwargs(req.kwargs)}`],
        exc_module: 'celery.exceptions',
      };
      return this.onFailure(job, { kind: 'failure', exc, traceback: outcome.options.traceback, runtimeMs: outcome.runtimeMs });
    }
    this.counters.retried++;
    const input = retryMessageInput(req, decision.eta);
    await this.app.publish(job.delivery.queue, this.app.buildMessage(input), req.priority);
    this.logger.info({ id: req.id, task: req.task, retries: req.retries + 1, eta: new Date(decision.eta).toISOString() }, `task ${req.task}[${req.id}] retry scheduled`);
    await this.storeMeta(
      buildResultMeta({
        taskId: req.id,
        status: 'RETRY',
        result: outcome.options.exc ? redactException(outcome.options.exc) : { exc_type: 'Retry', exc_message: ['Retry in the future'], exc_module: 'celery.exceptions' },
        traceback: outcome.options.traceback === null ? null : redactAll(outcome.options.traceback),
        children: [childTuple(req.id)],
        groupId: req.group,
        parentId: req.parentId,
      }),
    );
    await this.ackOnce(job);
  }

  private async onLost(job: Job, reason: string): Promise<void> {
    const { req, def } = job;
    if (job.acksLate && (this.stopping || (def.options.rejectOnWorkerLost ?? this.app.settings.taskRejectOnWorkerLost))) {
      this.logger.warn({ id: req.id, task: req.task, reason }, `task ${req.task}[${req.id}] ${reason}; message requeued`);
      job.acked = true;
      this.app.security.released?.(job.delivery.message);
      await job.delivery.reject(true);
      return;
    }
    return this.onFailure(job, {
      kind: 'failure',
      exc: { exc_type: 'WorkerLostError', exc_message: [`Worker exited prematurely: ${reason}`], exc_module: 'billiard.exceptions' },
      traceback: null,
      runtimeMs: 0,
    });
  }

  private async publishFollowUps(follow: FollowUp[]): Promise<void> {
    for (const f of follow) {
      const queue = f.queue ?? this.app.settings.taskRoutes[f.input.task]?.queue ?? this.app.settings.taskDefaultQueue;
      await this.app.publish(queue, this.app.buildMessage(f.input), f.input.priority);
    }
  }

  private storeMeta(meta: ResultMeta): Promise<void> {
    return this.store ? this.store.store(meta) : Promise.resolve();
  }

  private async ackOnce(job: Job): Promise<void> {
    if (job.acked) return;
    job.acked = true;
    await job.delivery.ack();
    // An ack on a closed channel reaches nobody: the broker redelivers, so the nonce is released, not settled.
    if (job.delivery.stale) this.app.security.released?.(job.delivery.message);
    else this.app.security.settled?.(job.delivery.message);
  }

  // ── shutdown ─────────────────────────────────────────────────────────

  /**
   * Graceful shutdown: stop consuming, requeue what has not started, let
   * running tasks finish within `shutdownTimeoutMs`, then kill the rest
   * (requeued when acksLate) and wait for results and acks to be written.
   */
  stop(): Promise<void> {
    this.stopPromise ??= (async () => {
      this.stopping = true;
      this.logger.info({ node: this.nodeName, active: this.active }, `worker ${this.nodeName} shutting down`);
      await this.consumer?.cancel().catch((err: unknown) => this.logger.warn({ err }, 'cancel failed'));
      const requeue = [...this.held.keys(), ...this.pending.splice(0)];
      for (const [job, timer] of this.held) {
        clearTimeout(timer);
        this.held.delete(job);
      }
      await Promise.all(requeue.map((j) => (j.acked ? undefined : ((j.acked = true), this.app.security.released?.(j.delivery.message), j.delivery.reject(true).catch(() => undefined)))));
      const deadline = Date.now() + this.shutdownTimeoutMs;
      while (this.active > 0 && Date.now() < deadline) await sleep(20);
      // The shutdown timeout is up: tasks still running are terminated and treated as Celery does (onLost):
      // late ack → the message goes back, no record written; early ack → FAILURE WorkerLostError.
      const lost = await this.pool.close(Math.max(0, deadline - Date.now()));
      for (const exec of lost) {
        const job = (exec as Execution).job;
        if (job.lost) continue;
        job.lost = true;
        this.active--;
        this.counters.processed++;
        this.finalize(job, () => this.onLost(job, `terminated at the shutdown timeout (${this.shutdownTimeoutMs / 1000} s)`));
      }
      // Results and acks of what ended are written (a short, bounded wait: they are in flight).
      while (this.finalizing > 0 && Date.now() < deadline + SHUTDOWN_SETTLE_MS) await sleep(10);
      this.logger.info({ node: this.nodeName, ...this.counters }, `worker ${this.nodeName} stopped`);
      this.resolveDone();
    })();
    return this.stopPromise;
  }
}

/**
 * An exception record as stored: URL credentials and known secrets in its
 * message and arguments masked (results outlive logs and are read by
 * anyone with access to the backend).
 */
function redactException(exc: ExceptionInfo): ExceptionInfo {
  return { ...exc, exc_message: exc.exc_message.map((m) => redactValue(m)) };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Callbacks or a chain to send after success (they must go out before the result is stored). */
function hasSuccessFollowUps(req: TaskRequest): boolean {
  return (req.embed.callbacks?.length ?? 0) > 0 || (req.embed.chain?.length ?? 0) > 0;
}
