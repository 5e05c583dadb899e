/**
 * The worker: consumes task messages, holds ETA tasks, applies expiry and
 * rate limits, runs tasks, stores results, sends follow-ups (retries,
 * chains, callbacks) and settles every delivery exactly once. Its parts:
 * intake.ts (decode, admit, refuse), scheduling.ts (ETA, rate limits,
 * slots), execution.ts (last checks, early ack, the pool), outcomes.ts
 * (records and follow-ups), settle.ts (ack, give back, result batches).
 * This file starts and stops them.
 *
 * One `Worker` runs its tasks in its own process. `createWorker` with the
 * default prefork pool starts a supervisor instead, whose child processes
 * each run one `Worker` (see prefork/supervisor.ts): the tasks never run in
 * the supervisor, and every child consumes for itself, so no single process
 * limits throughput.
 *
 * Ack semantics are Celery's: early ack (when the task starts) by default;
 * with acksLate the message is acked after the result is stored, and a task
 * whose process dies is redelivered when rejectOnWorkerLost is on.
 */
import { availableParallelism } from 'node:os';
import { defaultNodeName } from '../protocol/ids.ts';
import { onDelivery, onMalformed } from './intake.ts';
import { WorkerEvents } from './events.ts';
import { LossLedger } from './loss-ledger.ts';
import { finalize, onLost } from './outcomes.ts';
import { startWorkerControl, type WorkerControl } from './control/index.ts';
import { RevokedSet } from './control/revoked.ts';
import type { ControlHost } from './control/commands.ts';
import { createSoloPool } from './pool/solo.ts';
import { Supervisor } from './prefork/supervisor.ts';
import { drain } from './scheduling.ts';
import { giveBack } from './settle.ts';
import { sleep, type Execution, type WorkerState } from './state.ts';
import type { Broker } from '../core/broker.ts';
import type { WorkerHandle, WorkerOptions, WorkerStats } from './types.ts';

export type { TaskEvent, WorkerHandle, WorkerOptions, WorkerStats } from './types.ts';

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
  private readonly queues: string[];
  private readonly shutdownTimeoutMs: number;
  private readonly signal: AbortSignal | undefined;
  private readonly announce: boolean;
  private readonly w: WorkerState;
  private readonly options: WorkerOptions;
  private control: WorkerControl | undefined;
  private stopPromise: Promise<void> | undefined;
  private resolveDone!: () => void;
  /** Resolves once the worker has stopped. */
  readonly done: Promise<void>;

  constructor(options: WorkerOptions) {
    const rt = options.app;
    this.options = options;
    const logger = options.logger ?? rt.logger;
    this.nodeName = options.nodeName ?? defaultNodeName();
    this.queues = options.queues?.length ? options.queues : [rt.settings.taskDefaultQueue];
    const concurrency = Math.max(1, options.concurrency ?? availableParallelism());
    this.shutdownTimeoutMs = options.shutdownTimeoutMs ?? 30_000;
    this.signal = options.signal;
    this.announce = options.announce ?? true;
    this.done = new Promise((r) => (this.resolveDone = r));
    this.options = options;
    const w: WorkerState = {
      rt,
      logger,
      nodeName: this.nodeName,
      concurrency,
      basePrefetch: concurrency * (options.prefetchMultiplier ?? 4),
      pool: createSoloPool(rt.registry),
      logTasks: logger.isLevelEnabled('info'),
      onTaskEvents: options.onTaskEvents,
      onLoss: options.onLoss,
      ledger: new LossLedger(),
      counters: { processed: 0, succeeded: 0, failed: 0, retried: 0, revoked: 0, rejected: 0 },
      byTask: {},
      consumer: undefined,
      revoked: new RevokedSet(),
      running: new Map(),
      store: undefined,
      decodeBody: undefined,
      stopping: false,
      events: undefined,
      pending: [],
      held: new Map(),
      heldEta: 0,
      buckets: new Map(),
      active: 0,
      jobSeq: 0,
      draining: false,
      drainQueued: false,
      isolating: false,
      isolationWaiting: false,
      drain: () => drain(w),
      finalizing: 0,
      settleJobs: [],
      settleRecords: [],
      settleScheduled: false,
    };
    this.w = w;
  }

  /** Lost runs by task id (loss-ledger.ts): the supervisor's copy in a prefork child, this worker's own in solo. */
  get ledger(): LossLedger {
    return this.w.ledger;
  }

  /** What remote control acts on in this process (a prefork child runs its supervisor's forwarded commands on it). */
  get controlHost(): ControlHost | undefined {
    return this.control?.host;
  }

  /** Identifies this worker's deliveries at the broker (for recovery by a supervisor). */
  get consumerOwner(): string | undefined {
    return this.w.consumer?.owner;
  }

  /** Start the pool, connect, and begin consuming. */
  async start(): Promise<void> {
    const { w } = this;
    const broker = await w.rt.broker();
    await w.rt.security.prepare?.();
    w.store = await w.rt.resultStore();
    await w.pool.start();
    w.events = startWorkerEvents(w, broker, this.options);
    const consume = (queues: string[]) =>
      broker.consume(
        queues,
        { prefetch: w.basePrefetch + w.heldEta, onMalformed: (m) => onMalformed(w, m), onError: (err) => w.logger.warn({ err }, 'broker error; recovering') },
        (d) => onDelivery(w, d),
      );
    this.control = await startWorkerControl(w, broker, { queues: this.queues, consume, stop: () => void this.stop(), setTaskEvents: (on) => void this.setTaskEvents(on), heartbeat: () => w.events?.sendHeartbeat(), remoteControl: this.options.remoteControl ?? !this.options.onTaskEvents, listenOnly: this.options.onTaskEvents !== undefined && this.options.remoteControl !== false });
    w.consumer = await consume(this.queues);
    this.signal?.addEventListener('abort', () => void this.stop(), { once: true });
    if (this.signal?.aborted) void this.stop();
    if (this.announce) {
      w.logger.info(
        { node: this.nodeName, queues: this.queues, concurrency: w.concurrency, pool: w.pool.kind, tasks: [...w.rt.registry.keys()] },
        `worker ${this.nodeName} ready`,
      );
    }
  }

  async reload(options: { announce?: boolean } = {}): Promise<{ broker: boolean; backend: boolean }> {
    const c = await this.w.rt.reloadCredentials(options);
    if (options.announce !== false) this.w.logger.info({ ...c }, c.broker || c.backend ? 'credentials reloaded' : 'credentials unchanged');
    return c;
  }

  /**
   * Turn this process's task events on or off (remote control's
   * `enable_events`/`disable_events`); returns whether they were off before
   * (Celery answers "task events enabled" or "already enabled"). Starts a
   * dispatcher when this process had none (heartbeat off, no -E).
   */
  async setTaskEvents(on: boolean): Promise<boolean> {
    const { w } = this;
    const was = w.events?.taskEvents ?? false;
    if (on && !w.events) w.events = startWorkerEvents(w, await w.rt.broker(), { ...this.options, taskEvents: true, heartbeat: false });
    else w.events?.setTaskEvents(on);
    return was !== on;
  }

  /** This process's Celery events (its Lamport clock: `events.dispatcher.clock`), when it sends any. */
  get events(): WorkerEvents | undefined {
    return this.w.events;
  }

  /** Counters since start. */
  stats(): WorkerStats {
    const { w } = this;
    return { nodeName: this.nodeName, active: w.active, held: w.held.size, ...w.counters, byTask: { ...w.byTask } };
  }

  /**
   * Graceful shutdown: stop consuming, requeue what has not started, let
   * running tasks finish within `shutdownTimeoutMs`, then kill the rest
   * (requeued when acksLate) and wait for results and acks to be written.
   */
  stop(): Promise<void> {
    this.stopPromise ??= (async () => {
      const { w } = this;
      w.stopping = true;
      w.logger.info({ node: this.nodeName, active: w.active }, `worker ${this.nodeName} shutting down`);
      await this.control?.close();
      await w.consumer?.cancel().catch((err: unknown) => w.logger.warn({ err }, 'cancel failed'));
      const requeue = [...w.held.keys(), ...w.pending.splice(0)];
      for (const [job, timer] of w.held) {
        clearTimeout(timer);
        w.held.delete(job);
      }
      await Promise.all(requeue.map((j) => (j.acked ? undefined : giveBack(w, j).catch(() => undefined))));
      const deadline = Date.now() + this.shutdownTimeoutMs;
      while (w.active > 0 && Date.now() < deadline) await sleep(20);
      // The shutdown timeout is up: tasks still running are terminated and treated as Celery does (onLost):
      // late ack → the message goes back, no record written; early ack → FAILURE WorkerLostError.
      const lost = await w.pool.close(Math.max(0, deadline - Date.now()));
      for (const exec of lost) {
        const job = (exec as Execution).job;
        if (job.lost) continue;
        job.lost = true;
        w.active--;
        w.counters.processed++;
        finalize(w, job, () => onLost(w, job, `terminated at the shutdown timeout (${this.shutdownTimeoutMs / 1000} s)`));
      }
      // Results and acks of what ended are written (a short, bounded wait: they are in flight).
      while (w.finalizing > 0 && Date.now() < deadline + SHUTDOWN_SETTLE_MS) await sleep(10);
      await w.events?.stop();
      w.logger.info({ node: this.nodeName, ...w.counters }, `worker ${this.nodeName} stopped`);
      this.resolveDone();
    })();
    return this.stopPromise;
  }
}

/**
 * Celery events of this process (events.ts): task events when asked for,
 * and the heartbeat unless this is a prefork child (its supervisor beats
 * for the node) or it is turned off. Undefined when neither is sent.
 */
function startWorkerEvents(w: WorkerState, broker: Broker, o: WorkerOptions): WorkerEvents | undefined {
  const taskEvents = o.taskEvents ?? w.rt.settings.workerSendTaskEvents;
  const heartbeat = (o.heartbeat ?? true) && (o.announce ?? true);
  if (!taskEvents && !heartbeat) return undefined;
  const events = new WorkerEvents({
    broker,
    hostname: w.nodeName,
    logger: w.logger,
    taskEvents,
    heartbeat,
    heartbeatIntervalS: o.heartbeatIntervalS,
    exchange: w.rt.settings.eventExchange,
    status: () => ({ active: w.active, processed: w.counters.processed + w.active }),
  });
  events.start();
  return events;
}
