/**
 * The prefork supervisor. Tasks never run here: each child process runs a
 * Worker that consumes and executes its share of the concurrency. The
 * supervisor starts the children, restarts them when they die, enforces
 * hard time limits (a child stuck in a task past its limit is killed), and
 * when a child dies it settles what the child cannot:
 *
 * - the task that hit its hard time limit gets FAILURE TimeLimitExceeded and
 *   its message is removed (it must not run again);
 * - other late-ack tasks of the child go back to their queue at once
 *   (`Broker.recoverOwner`; brokers without it redeliver after their
 *   visibility timeout or, on AMQP, when the connection drops) — unless the
 *   child crashed by itself and rejectOnWorkerLost is off, in which case, as
 *   in Celery, they fail with WorkerLostError instead of being retried
 *   forever by a poison message;
 * - early-ack tasks (their message was acked when they started) fail with
 *   WorkerLostError so that nobody waits for them forever.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { splitSecretEnv } from '../../config/env.ts';
import { CeleriacError, ConfigError } from '../../errors.ts';
import { recordSecurityEvent } from '../../observability/security-events.ts';
import type { Logger } from '../../observability/logging.ts';
import { defaultNodeName } from '../../protocol/ids.ts';
import { RUNNING_FROM_SOURCE } from '../../runtime/import-module.ts';
import { buildResultMeta, type ExceptionInfo } from '../../protocol/result-meta.ts';
import type { ReplyRoute } from '../../core/backend.ts';
import { revokedRecord, timeLimitExceeded, workerLost } from '../exception-records.ts';
import { LossLedger, lossReason, lostRuns, pullShared, pushShared, type LossEntry, type LossKind } from '../loss-ledger.ts';
import { startNodeHeartbeat, type WorkerEvents } from '../events.ts';
import { decodeStartedLine, type ChildOverrides, type FromChild, type ToChild } from './supervisor-ipc.ts';
import { ControlForwarder } from './forward.ts';
import type { WorkerRuntime } from '../runtime.ts';
import type { TaskEvent, WorkerHandle, WorkerOptions, WorkerStats } from '../types.ts';
import type { ControlServer } from '../control/server.ts';
import { startSupervisorControl, type SupervisorView } from '../control/supervisor-host.ts';
import { settleLostCanvas } from '../canvas/lost.ts';

// Compiled (dist/): children run plain JavaScript and load tsx only for a TypeScript app module.
// From source: children need tsx for Celeriac's own modules.
const CHILD_MAIN = fileURLToPath(new URL(RUNNING_FROM_SOURCE ? './child-main.ts' : './child-main.js', import.meta.url));
const LOADER_ARGS = RUNNING_FROM_SOURCE ? ['--import', import.meta.resolve('tsx')] : [];

/**
 * Default number of child processes: one per CPU but one, never more than
 * the concurrency. Each child runs many tasks at once on its event loop, so
 * children add CPU parallelism only; the last core is left to the
 * supervisor, the broker client and the OS. Measured on 2 cores with Redis
 * on the same machine: one child drains 13 % faster than two at
 * concurrency 100 and halves latency at concurrency 10 (bench/README.md).
 */
export function defaultProcesses(concurrency: number, cpus: number): number {
  return Math.max(1, Math.min(concurrency, cpus - 1));
}
/** Extra time a child gets past a task's hard limit to enforce it itself before it is killed. */
const WATCHDOG_GRACE_MS = 2000;
/** Backoff between attempts to start a replacement child: 200 ms, doubling, at most 10 s. */
const RESPAWN_BASE_DELAY_MS = 200;
const RESPAWN_MAX_DELAY_MS = 10_000;
/** A child that has not reported ready by then is killed and its start counts as failed. */
const CHILD_START_TIMEOUT_MS = 60_000;
/**
 * Past the shutdown timeout, how long a child gets to terminate its tasks,
 * give back their messages and exit before it is killed (a task blocking
 * its event loop keeps it from doing so).
 */
const SHUTDOWN_KILL_GRACE_MS = 2500;
/** How often the supervisor renews the broker leases of its children's running late-ack tasks (below every lease). */
const LEASE_RENEW_MS = 2000;

type Started = Extract<TaskEvent, { type: 'started' }>;

/** Where an `rpc://` record of a started task goes (undefined: stores keyed by task id need no route). */
function replyRouteOf(e: Started): ReplyRoute | undefined {
  return e.replyTo ? { replyTo: e.replyTo, correlationId: e.correlationId ?? e.id } : undefined;
}

interface Child {
  index: number;
  proc: ChildProcess;
  owner: string | undefined;
  ready: boolean;
  /** Started lines (see supervisor-ipc.ts) of tasks still running, by key; timers for hard limits. */
  running: Map<string, string>;
  timers: Map<string, NodeJS.Timeout>;
  stats: WorkerStats | undefined;
  /** Set when the supervisor killed it for this task. */
  culprit: Started | undefined;
  /** The culprit was revoked with terminate (remote control), not past its time limit. */
  culpritRevoked?: boolean;
  /** Killed because it outlived the shutdown timeout (its tasks were terminated, as Celery does). */
  shutdownKill?: boolean;
  /** Waiting for the answer to a credential reload. */
  onReloaded?: (m: Extract<FromChild, { t: 'reloaded' }>) => void;
}

/** How long a child may take to answer a credential reload before the pool's reload is reported incomplete. */
const RELOAD_ANSWER_MS = 30_000;

const ZERO: Omit<WorkerStats, 'nodeName'> = { active: 0, held: 0, processed: 0, succeeded: 0, failed: 0, retried: 0, revoked: 0, rejected: 0, byTask: {} };

export class Supervisor implements WorkerHandle {
  readonly nodeName: string;
  readonly done: Promise<void>;
  private readonly app: WorkerRuntime;
  private readonly appModule: string;
  private readonly logger: Logger;
  private readonly processes: number;
  private readonly shares: number[];
  private readonly options: WorkerOptions;
  private readonly children: Array<Child | undefined>;
  /** Stats of children that exited, so the totals survive restarts. */
  private retired: Omit<WorkerStats, 'nodeName'> = { ...ZERO, byTask: {} };
  /** The node's heartbeat (worker-online/heartbeat/offline); its children send the task events. */
  private events: WorkerEvents | undefined;
  private stopping = false;
  private stopPromise: Promise<void> | undefined;
  private resolveDone!: () => void;
  /** Consecutive failed starts per slot (backoff). */
  private readonly slotFailures: number[];
  private readonly respawnTimers = new Set<NodeJS.Timeout>();
  /** Settlements of dead children under way: shutdown waits for them (the app closes after). */
  private readonly settling = new Set<Promise<void>>();
  private readonly maxEmptyPoolMs: number;
  private emptySince: number | undefined;
  private emptyTimer: NodeJS.Timeout | undefined;
  private leaseTimer: NodeJS.Timeout | undefined;
  /** Why the supervisor gave up (done rejects with it). */
  private failure: Error | undefined;
  private rejectDone!: (err: Error) => void;
  private readonly execArgv: string[];
  /** Lost runs by task id (loss-ledger.ts); children get every change. */
  private readonly ledger = new LossLedger();
  /** The node's pidbox (control/supervisor-host.ts). */
  private control: ControlServer | undefined;
  /** What remote control changed, so replacement children start with it (control/supervisor-host.ts). */
  private readonly queues: string[];
  private taskEvents: boolean | undefined;
  private readonly overrides: ChildOverrides = { rateLimits: {}, timeLimits: {} };
  private readonly forwarder = new ControlForwarder();

  constructor(options: WorkerOptions) {
    if (!options.appModule) {
      throw new ConfigError('the prefork pool needs appModule, the module that exports the app', {
        hint: "pass appModule: new URL('../tasks.ts', import.meta.url).href, or pool: 'solo' to run tasks in this process",
      });
    }
    this.options = options;
    this.app = options.app;
    this.appModule = options.appModule;
    this.logger = options.logger ?? options.app.logger;
    this.nodeName = options.nodeName ?? defaultNodeName();
    this.queues = options.queues?.length ? [...options.queues] : [this.app.settings.taskDefaultQueue];
    this.taskEvents = options.taskEvents;
    const concurrency = Math.max(1, options.concurrency ?? availableParallelism());
    this.processes = Math.max(1, Math.min(options.processes ?? defaultProcesses(concurrency, availableParallelism()), concurrency));
    // Split the concurrency as evenly as possible: 10 over 3 children is 4, 3, 3.
    this.shares = Array.from({ length: this.processes }, (_, i) => Math.floor(concurrency / this.processes) + (i < concurrency % this.processes ? 1 : 0));
    this.children = new Array<Child | undefined>(this.processes).fill(undefined);
    this.execArgv = [...LOADER_ARGS];
    if (options.maxMemoryPerChildMb) this.execArgv.push(`--max-old-space-size=${Math.max(16, Math.floor(options.maxMemoryPerChildMb))}`);
    // Children inherit NODE_OPTIONS (not this process's flags); the option, when given, comes after it and wins.
    const young = options.youngGenerationMbPerChild;
    if (young !== undefined) this.execArgv.push(`--max-semi-space-size=${Math.max(1, Math.floor(young))}`);
    this.slotFailures = new Array<number>(this.processes).fill(0);
    this.maxEmptyPoolMs = options.maxEmptyPoolMs ?? 60_000;
    this.done = new Promise((resolve, reject) => {
      this.resolveDone = resolve;
      this.rejectDone = reject;
    });
    // Nobody has to listen: an embedder that never awaits `done` must not get an unhandled rejection.
    this.done.catch(() => undefined);
  }

  async start(): Promise<void> {
    const started = await Promise.allSettled(this.shares.map((_, i) => this.spawn(i)));
    // A child killed by a signal during start-up (the OOM killer, an operator) is started again; a child that
    // could not load the app or reach the broker means the worker cannot start at all.
    const failed = started.find((s): s is PromiseRejectedResult => s.status === 'rejected' && !(s.reason as { killed?: boolean }).killed);
    if (!failed && started.every((s) => s.status === 'rejected')) {
      this.stopping = true;
      throw (started[0] as PromiseRejectedResult).reason;
    }
    if (!failed) started.forEach((s, i) => s.status === 'rejected' && this.respawn(i));
    if (failed) {
      this.stopping = true;
      for (const c of this.children) c?.proc.kill('SIGKILL');
      throw failed.reason;
    }
    this.options.signal?.addEventListener('abort', () => void this.stop(), { once: true });
    if (this.options.signal?.aborted) void this.stop();
    this.emptyTimer = setInterval(() => this.checkEmpty(), Math.max(50, Math.min(1000, this.maxEmptyPoolMs / 4)));
    this.emptyTimer.unref();
    this.leaseTimer = setInterval(() => void this.renewRunning(), LEASE_RENEW_MS);
    this.leaseTimer.unref();
    this.events = await startNodeHeartbeat(this.app, this.nodeName, this.logger, this.options, () => this.stats());
    this.logger.info(
      { node: this.nodeName, queues: this.options.queues ?? [this.app.settings.taskDefaultQueue], concurrency: this.shares.reduce((a, b) => a + b, 0), pool: 'prefork', processes: this.processes, pids: this.children.map((c) => c?.proc.pid), tasks: [...this.app.registry.keys()] },
      `worker ${this.nodeName} ready`,
    );
    if (this.options.remoteControl !== false) this.control = await startSupervisorControl(this.controlView(), await this.app.broker());
  }

  /** What remote control sees of this node. */
  private controlView(): SupervisorView {
    return {
      nodeName: this.nodeName,
      app: this.app,
      logger: this.logger,
      queues: this.queues,
      shares: this.shares,
      prefetchMultiplier: this.options.prefetchMultiplier ?? 4,
      overrides: this.overrides,
      pids: () => this.children.flatMap((c) => (c?.proc.pid ? [c.proc.pid] : [])),
      running: () => this.children.flatMap((c) => (c ? [...c.running.values()].map((l) => ({ ...decodeStartedLine(l), pid: c.proc.pid })) : [])),
      stats: () => this.stats(),
      stop: () => void this.stop(),
      killRevoked: (ids, graceMs) => this.killRevoked(ids, graceMs),
      forward: (method, args, timeoutMs, to) => {
        const procs = (to ?? this.children.map((_, i) => i)).flatMap((i) => (this.children[i]?.proc.connected ? [this.children[i]!.proc] : []));
        return this.forwarder.ask(procs, method, args, timeoutMs);
      },
      setTaskEvents: (on) => (this.taskEvents = on),
      heartbeat: () => this.events?.sendHeartbeat(),
    };
  }

  private spawn(index: number): Promise<Child> {
    // Secrets (broker URLs with passwords, keys) go over IPC, not into the child's environment block,
    // which /proc/<pid>/environ shows for the life of the process (issue 20 #11).
    const { plain, secret } = splitSecretEnv(process.env);
    const proc = fork(CHILD_MAIN, [], { execArgv: this.execArgv, serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: plain });
    const child: Child = { index, proc, owner: undefined, ready: false, running: new Map(), timers: new Map(), stats: undefined, culprit: undefined };
    this.children[index] = child;
    return new Promise<Child>((resolve, reject) => {
      // A failed start frees its slot at once (the process is killed if it lingers) so a retry can take it.
      const fail = (err: Error): void => {
        clearTimeout(startTimer);
        if (this.children[index] === child) this.children[index] = undefined;
        if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
        reject(err);
      };
      const startTimer = setTimeout(
        () => fail(new CeleriacError('ERR_WORKER_START', `a worker process did not report ready within ${CHILD_START_TIMEOUT_MS / 1000} s`, { hint: 'check that the broker is reachable' })),
        CHILD_START_TIMEOUT_MS,
      );
      startTimer.unref();
      proc.on('message', (m: FromChild) => {
        switch (m.t) {
          case 'ready':
            clearTimeout(startTimer);
            child.ready = true;
            child.owner = m.owner;
            resolve(child);
            break;
          case 'init-error':
            fail(new CeleriacError('ERR_WORKER_START', `a worker process could not start: ${m.message}`, { hint: 'check that the module given with -A loads, exports the app, and that the broker is reachable' }));
            break;
          case 'events':
            this.onTaskEvents(child, m.lines);
            break;
          case 'stats':
            child.stats = m.stats;
            break;
          case 'loss':
            this.onChildLoss(m.id, m.kind, m.final);
            break;
          case 'reloaded':
            child.onReloaded?.(m);
            break;
          case 'control-reply':
            this.forwarder.onReply(m);
            break;
          case 'stopped':
            break;
        }
      });
      proc.on('error', (err) => this.logger.error({ err, pid: proc.pid }, 'worker process error'));
      proc.on('exit', (code, signal) => {
        if (!child.ready) fail(Object.assign(new CeleriacError('ERR_WORKER_START', `a worker process exited during start-up (${signal ?? `code ${code}`})`), { killed: signal !== null }));
        void this.onExit(child, code, signal);
      });
      proc.send({
        t: 'init',
        env: secret,
        appModule: this.appModule,
        options: {
          queues: [...this.queues],
          concurrency: this.shares[index]!,
          prefetchMultiplier: this.options.prefetchMultiplier,
          nodeName: this.nodeName,
          shutdownTimeoutMs: this.options.shutdownTimeoutMs,
          taskEvents: this.taskEvents,
          overrides: this.overrides,
        },
        losses: this.ledger.all(),
      } satisfies ToChild);
    });
  }

  private onTaskEvents(child: Child, lines: string): void {
    for (const line of lines.split('\n')) {
      const tab = line.indexOf('\t', 2);
      const key = tab < 0 ? line.slice(2) : line.slice(2, tab);
      if (line.charCodeAt(0) === 0x73 /* s */) {
        child.running.set(key, line);
        // A hard limit is the third field: watch only the tasks that have one.
        if (line.charCodeAt(tab + 1) !== 0x09) {
          const e = decodeStartedLine(line);
          const timer = setTimeout(() => this.killStuck(child, e), (e.hardLimitMs ?? 0) + WATCHDOG_GRACE_MS);
          timer.unref();
          child.timers.set(key, timer);
        }
      } else {
        child.running.delete(key);
        if (this.ledger.size > 0) this.ledger.forget(key.slice(0, key.indexOf(' ')));
        const timer = child.timers.get(key);
        if (timer) {
          clearTimeout(timer);
          child.timers.delete(key);
        }
      }
    }
  }

  /**
   * Remote control's revoke with terminate and SIGKILL: a task still running
   * after its child had `graceMs` to abort it is killed with its process
   * (the other tasks of that process are settled as for any lost process).
   */
  private killRevoked(ids: readonly string[], graceMs: number): void {
    setTimeout(() => {
      for (const child of this.children) {
        if (!child || child.proc.exitCode !== null || child.culprit) continue;
        const e = [...child.running.values()].map(decodeStartedLine).find((x) => ids.includes(x.id));
        if (!e) continue;
        this.logger.warn({ id: e.id, task: e.task, pid: child.proc.pid, running: child.running.size }, `revoked task ${e.task}[${e.id}] terminated: killing its worker process`);
        child.culprit = e;
        child.culpritRevoked = true;
        child.proc.kill('SIGKILL');
      }
    }, graceMs).unref();
  }

  /** A task is past its hard limit and its process did not end it: kill the process. */
  private killStuck(child: Child, e: Started): void {
    if (child.proc.exitCode !== null || child.culprit) return;
    this.logger.error({ id: e.id, task: e.task, pid: child.proc.pid }, `hard time limit (${(e.hardLimitMs ?? 0) / 1000}s) exceeded by ${e.task}[${e.id}]; killing its worker process`);
    child.culprit = e;
    child.proc.kill('SIGKILL');
  }

  private async onExit(child: Child, code: number | null, signal: NodeJS.Signals | null): Promise<void> {
    if (this.children[child.index] === child) this.children[child.index] = undefined;
    for (const t of child.timers.values()) clearTimeout(t);
    if (child.stats) this.retire(child.stats);
    // A planned exit (warm shutdown) with nothing left running is not an error.
    if (this.stopping && !child.culprit && child.running.size === 0) return;
    if (this.stopping && !child.culprit) {
      const settling = this.settleShutdown(child);
      this.settling.add(settling);
      await settling;
      this.settling.delete(settling);
      return;
    }
    // A child that dies before reporting ready is retried by spawn's caller; but one that had already started
    // tasks (AMQP can deliver before the consume call returns) must have them settled and counted too.
    if (!child.ready && child.running.size === 0) return;
    if (!child.culprit) this.logger.error({ pid: child.proc.pid, code, signal, running: child.running.size }, `worker process ${child.proc.pid} exited unexpectedly (${signal ?? `code ${code}`})`);
    // The replacement starts at once (a settlement can wait on an unreachable backend); ledger changes made
    // while it starts reach it too (child-main keeps them until its worker exists).
    if (!this.stopping && child.ready) this.respawn(child.index);
    try {
      const settling = this.settleFor(child);
      this.settling.add(settling);
      await settling.finally(() => this.settling.delete(settling));
    } catch (err) {
      this.logger.error({ err }, 'could not settle the tasks of a lost worker process; the broker will redeliver them after its visibility timeout');
    }
  }

  /**
   * Start a replacement for the child of slot `index`, retrying with backoff
   * until one reports ready: a replacement that dies during start-up (its
   * app module fails, the broker is down) must not cost the pool a slot.
   */
  private respawn(index: number): void {
    const failures = this.slotFailures[index] ?? 0;
    const delay = failures === 0 ? 0 : Math.min(RESPAWN_MAX_DELAY_MS, RESPAWN_BASE_DELAY_MS * 2 ** (failures - 1));
    const timer = setTimeout(() => {
      this.respawnTimers.delete(timer);
      if (this.stopping || this.children[index] !== undefined) return;
      this.spawn(index).then(
        () => {
          this.slotFailures[index] = 0;
        },
        (err: unknown) => {
          this.slotFailures[index] = failures + 1;
          this.logger.error({ err, attempt: failures + 1 }, `could not start a replacement worker process; retrying in ${Math.min(RESPAWN_MAX_DELAY_MS, RESPAWN_BASE_DELAY_MS * 2 ** failures) / 1000}s`);
          this.respawn(index);
        },
      );
    }, delay);
    this.respawnTimers.add(timer);
  }

  /**
   * Renew the broker leases of the late-ack tasks running in the children:
   * a task that blocks its child's event loop (CPU-bound) keeps the child
   * from renewing them, and an expired lease would let another worker run
   * the task a second time while it still runs.
   */
  private async renewRunning(): Promise<void> {
    if (this.stopping) return;
    const tags: string[] = [];
    for (const c of this.children) {
      if (!c) continue;
      for (const line of c.running.values()) {
        const e = decodeStartedLine(line);
        if (e.lateAck) tags.push(e.tag);
      }
    }
    if (tags.length === 0) return;
    try {
      const broker = await this.app.broker();
      await broker.renewLeases?.(tags);
    } catch (err) {
      this.logger.warn({ err }, 'could not renew the leases of running tasks');
    }
  }

  /** Children that are up and consuming. */
  private liveChildren(): number {
    let n = 0;
    for (const c of this.children) if (c?.ready && c.proc.exitCode === null && c.proc.signalCode === null) n++;
    return n;
  }

  /**
   * A supervisor left without any running child for longer than
   * `maxEmptyPoolMs` gives up: it stops and `done` rejects (the CLI exits
   * non-zero), so an orchestrator restarts it instead of it idling forever.
   */
  private checkEmpty(): void {
    if (this.stopping) return;
    if (this.liveChildren() > 0) {
      this.emptySince = undefined;
      return;
    }
    const now = Date.now();
    this.emptySince ??= now;
    if (now - this.emptySince < this.maxEmptyPoolMs) return;
    const err = new CeleriacError('ERR_POOL_EMPTY', `worker ${this.nodeName} has had no running worker process for ${Math.round((now - this.emptySince) / 1000)} s (every replacement failed to start)`, {
      hint: 'see the errors above for why the worker processes cannot start (app module, broker reachability); the supervisor exits so that its process manager restarts it',
    });
    this.logger.error({ err }, err.message);
    this.failure = err;
    void this.stop();
  }

  /**
   * A child terminated at the shutdown timeout: its late-ack tasks go back
   * to their queue with no record written (they will run again), early-ack
   * ones get FAILURE WorkerLostError (their message is gone) — Celery's
   * rules. Nothing here counts as a lost run of the task.
   */
  private async settleShutdown(child: Child): Promise<void> {
    const failures: Started[] = [];
    for (const line of child.running.values()) {
      const event = decodeStartedLine(line);
      if (!event.lateAck) failures.push(event);
    }
    this.logger.warn(
      { pid: child.proc.pid, running: child.running.size, failed: failures.length },
      `worker process ${child.proc.pid} terminated at the shutdown timeout with ${child.running.size} task(s) running; late-ack tasks requeued, early-ack tasks failed`,
    );
    try {
      if (failures.length > 0) {
        const store = await this.app.resultStore();
        const exc = workerLost(`process ${child.proc.pid} terminated at the shutdown timeout`);
        await store?.storeRecords(failures.map((event) => store.encode(buildResultMeta({ taskId: event.id, status: 'FAILURE', result: exc, traceback: null, groupId: event.group, parentId: event.parentId }), replyRouteOf(event))));
      }
      if (child.owner) {
        const broker = await this.app.broker();
        if (broker.recoverOwner) await broker.recoverOwner(child.owner, { drop: failures.map((e) => e.tag) });
      }
    } catch (err) {
      this.logger.error({ err }, 'could not settle the tasks of a worker process terminated at shutdown; the broker redelivers them after its visibility timeout');
    }
  }

  /**
   * Settle, for a dead child, what it left behind (see the module comment).
   * Every lost late-ack run is counted in the loss ledger, and the ledger's
   * changes reach the other children before any message goes back, so a
   * redelivered copy is judged by them before it runs.
   */
  private async settleFor(child: Child): Promise<void> {
    const drop: string[] = [];
    const deadLetter = new Map<string, string>();
    const failures: Array<{ event: Started; exc: ExceptionInfo; status?: 'REVOKED' }> = [];
    const changed = new Map<string, LossEntry>();
    const culprit = child.culprit;
    // A task that was running alone when its process died is the cause; several running together are suspects.
    const alone = child.running.size === 1;
    // What other worker nodes counted for these tasks (the shared ledger in the result backend).
    const store = await this.app.resultStore();
    if (store) {
      const ids = [...child.running.values()].map((l) => decodeStartedLine(l).id);
      await pullShared(this.ledger, store.backend, ids).catch((err: unknown) => this.logger.warn({ err }, 'could not read the shared loss ledger; counting on this node only'));
    }
    const how = `process ${child.proc.pid} ${culprit ? (child.culpritRevoked ? 'killed to terminate a revoked task' : 'killed at a hard time limit') : 'died'}`;
    for (const line of child.running.values()) {
      const event = decodeStartedLine(line);
      if (culprit && child.culpritRevoked && event.id === culprit.id && event.tag === culprit.tag) {
        failures.push({ event, exc: revokedRecord('terminated'), status: 'REVOKED' });
        if (event.lateAck) drop.push(event.tag);
        continue;
      }
      if (culprit && event.id === culprit.id && event.tag === culprit.tag) {
        this.ledger.record(event.id, 'timeLimit');
        changed.set(event.id, this.ledger.finalize(event.id));
        failures.push({ event, exc: timeLimitExceeded((event.hardLimitMs ?? 0) / 1000) });
        if (event.lateAck) drop.push(event.tag);
        continue;
      }
      if (!event.lateAck) {
        // Early ack: the message is gone; nobody may wait for ever.
        failures.push({ event, exc: workerLost(how) });
        continue;
      }
      // Another task's time limit killed the process: this one is innocent and goes back as it was.
      if (culprit) continue;
      if (!alone) {
        changed.set(event.id, this.ledger.record(event.id, 'suspect'));
        continue;
      }
      const entry = this.ledger.record(event.id, 'crash');
      changed.set(event.id, entry);
      if (!this.rejectOnWorkerLost(event.task)) {
        // Celery's rule, now for the one task known to have caused the loss.
        this.ledger.finalize(event.id);
        failures.push({ event, exc: workerLost(how) });
        drop.push(event.tag);
      } else if (lostRuns(entry) > this.maxRedeliveries(event.task)) {
        const reason = lossReason(entry);
        this.ledger.finalize(event.id);
        this.logger.error({ id: event.id, task: event.task }, `task ${event.task}[${event.id}] ${reason}; message dead-lettered`);
        failures.push({ event, exc: workerLost(`${how}; the task ${reason} and its message was dead-lettered`) });
        deadLetter.set(event.tag, reason);
      }
    }
    if (changed.size > 0) {
      this.broadcastLosses(changed);
      if (store) await pushShared(this.ledger, store.backend, [...changed.keys()], this.app.settings.resultExpires).catch((err: unknown) => this.logger.warn({ err }, 'could not write the shared loss ledger'));
    }
    if (store && failures.length > 0) {
      await store.storeRecords(
        failures.map(({ event, exc, status }) => store.encode(buildResultMeta({ taskId: event.id, status: status ?? 'FAILURE', result: exc, traceback: null, groupId: event.group, parentId: event.parentId }), replyRouteOf(event))),
      );
      for (const { event, exc, status } of failures) if (event.canvas) await settleLostCanvas({ store, logger: this.logger, rt: this.app }, event.canvas, status ?? 'FAILURE', exc).catch((err: unknown) => this.logger.error({ err, id: event.id }, 'could not settle the chain, chord or errbacks of a lost task'));
    }
    if (child.owner) {
      const broker = await this.app.broker();
      if (broker.recoverOwner) {
        const n = await broker.recoverOwner(child.owner, { drop, deadLetter });
        if (n > 0) this.logger.warn({ restored: n, pid: child.proc.pid }, `requeued ${n} message(s) of worker process ${child.proc.pid}`);
      }
    }
  }

  /** Send ledger changes to every live child (before the messages can come back to them). */
  private broadcastLosses(changed: Map<string, LossEntry>): void {
    const entries = [...changed];
    for (const c of this.children) if (c?.proc.connected) c.proc.send({ t: 'losses', entries } satisfies ToChild);
  }

  /** A child counted a lost run itself (a result it could not settle): record it and tell the others. */
  private onChildLoss(id: string, kind: LossKind | 'final', final: boolean): void {
    const entry = kind === 'final' ? this.ledger.finalize(id) : this.ledger.record(id, kind);
    if (final) this.ledger.finalize(id);
    this.broadcastLosses(new Map([[id, entry]]));
    void this.app
      .resultStore()
      .then((store) => store && pushShared(this.ledger, store.backend, [id], this.app.settings.resultExpires))
      .catch((err: unknown) => this.logger.warn({ err }, 'could not write the shared loss ledger'));
  }

  private maxRedeliveries(task: string): number {
    return this.app.registry.get(task)?.options.maxRedeliveries ?? this.app.settings.taskMaxRedeliveries;
  }

  private rejectOnWorkerLost(task: string): boolean {
    return this.app.registry.get(task)?.options.rejectOnWorkerLost ?? this.app.settings.taskRejectOnWorkerLost;
  }

  private retire(s: WorkerStats): void {
    addCounts(this.retired, s);
  }

  stats(): WorkerStats {
    const out: WorkerStats = { nodeName: this.nodeName, ...this.retired, byTask: { ...this.retired.byTask }, pool: { target: this.processes, live: this.liveChildren() } };
    for (const c of this.children) {
      if (!c?.stats) continue;
      out.active += c.stats.active;
      out.held += c.stats.held;
      addCounts(out, c.stats);
    }
    return out;
  }

  /**
   * SIGHUP: this process (whose broker and backend connections settle a
   * dead child's tasks) and then every child take the new credentials; one
   * `secret_reloaded` is announced when all have, so an operator who waits
   * for it may retire the old secret. Rejects when a process refused them.
   */
  async reload(): Promise<void> {
    // This process first: a secret it refuses (weak, wrong) is refused for the whole pool, and nothing changes.
    const own = await this.app.reloadCredentials({ announce: false });
    const answers = await Promise.all(
      this.children.map((c) => {
        if (!c?.proc.connected) return undefined;
        return new Promise<Extract<FromChild, { t: 'reloaded' }>>((resolve) => {
          const timer = setTimeout(() => resolve({ t: 'reloaded', error: `no answer within ${RELOAD_ANSWER_MS / 1000} s` }), RELOAD_ANSWER_MS);
          timer.unref();
          c.onReloaded = (m) => {
            clearTimeout(timer);
            c.onReloaded = undefined;
            resolve(m);
          };
          c.proc.send({ t: 'reload' } satisfies ToChild);
        });
      }),
    );
    const failed = answers.filter((a) => a?.error !== undefined).length;
    const broker = own.broker || answers.some((a) => a?.changed?.broker);
    const backend = own.backend || answers.some((a) => a?.changed?.backend);
    if (failed > 0) {
      throw new CeleriacError('ERR_RELOAD', `${failed} of ${answers.filter(Boolean).length} worker processes did not take the new credentials (their log says why)`, {
        hint: 'check the secret files and send SIGHUP again; the processes that failed keep their current credentials',
      });
    }
    // One announcement for the pool, once every process has switched: the old secret may be retired now.
    if (broker || backend) {
      recordSecurityEvent('secret_reloaded', { reason: `credentials reloaded for ${[broker && 'broker', backend && 'result backend'].filter(Boolean).join(' and ')} in ${1 + answers.filter(Boolean).length} processes` }, this.logger);
    }
  }

  /** Warm shutdown: each child stops consuming, requeues what it has not started and finishes what runs. */
  stop(): Promise<void> {
    this.stopPromise ??= (async () => {
      this.stopping = true;
      await this.control?.close().catch(() => undefined);
      for (const t of this.respawnTimers) clearTimeout(t);
      this.respawnTimers.clear();
      if (this.emptyTimer) clearInterval(this.emptyTimer);
      if (this.leaseTimer) clearInterval(this.leaseTimer);
      this.logger.info({ node: this.nodeName }, `worker ${this.nodeName} shutting down`);
      const live = this.children.filter((c): c is Child => c !== undefined && c.proc.exitCode === null);
      // Each child gives its tasks the shutdown timeout, then terminates what still runs (Worker.stop);
      // a child still there after a short grace (a task blocking its event loop) is killed.
      const deadline = (this.options.shutdownTimeoutMs ?? 30_000) + SHUTDOWN_KILL_GRACE_MS;
      await Promise.all(
        live.map(
          (c) =>
            new Promise<void>((resolve) => {
              const timer = setTimeout(() => {
                c.shutdownKill = true;
                c.proc.kill('SIGKILL');
              }, deadline);
              c.proc.once('exit', () => {
                clearTimeout(timer);
                resolve();
              });
              if (c.proc.connected) c.proc.send({ t: 'stop' } satisfies ToChild);
              else c.proc.kill('SIGKILL');
            }),
        ),
      );
      while (this.settling.size > 0) await Promise.allSettled([...this.settling]);
      await this.events?.stop();
      this.logger.info({ node: this.nodeName, ...this.stats(), byTask: undefined, pool: undefined }, `worker ${this.nodeName} stopped`);
      if (this.failure) this.rejectDone(this.failure);
      else this.resolveDone();
    })();
    return this.stopPromise;
  }
}

/** Add a child's cumulative counters into a total. */
function addCounts(into: Omit<WorkerStats, 'nodeName'>, s: WorkerStats): void {
  into.processed += s.processed;
  into.succeeded += s.succeeded;
  into.failed += s.failed;
  into.retried += s.retried;
  into.revoked += s.revoked;
  into.rejected += s.rejected;
  for (const [k, v] of Object.entries(s.byTask)) into.byTask[k] = (into.byTask[k] ?? 0) + v;
}
