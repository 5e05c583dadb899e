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
import { splitSecretEnv } from '../config/env.ts';
import type { App } from '../app.ts';
import { CeleriacError, ConfigError } from '../errors.ts';
import type { Logger } from '../logging.ts';
import { defaultNodeName } from '../protocol/ids.ts';
import { RUNNING_FROM_SOURCE } from '../runtime/import-module.ts';
import { buildResultMeta, type ExceptionInfo } from '../protocol/result-meta.ts';
import { decodeStartedLine, type FromChild, type ToChild } from './supervisor-ipc.ts';
import type { TaskEvent, WorkerHandle, WorkerOptions, WorkerStats } from './worker.ts';

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

type Started = Extract<TaskEvent, { type: 'started' }>;

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
}

const ZERO: Omit<WorkerStats, 'nodeName'> = { active: 0, held: 0, processed: 0, succeeded: 0, failed: 0, retried: 0, revoked: 0, rejected: 0, byTask: {} };

export class Supervisor implements WorkerHandle {
  readonly nodeName: string;
  readonly done: Promise<void>;
  private readonly app: App;
  private readonly appModule: string;
  private readonly logger: Logger;
  private readonly processes: number;
  private readonly shares: number[];
  private readonly options: WorkerOptions;
  private readonly children: Array<Child | undefined>;
  /** Stats of children that exited, so the totals survive restarts. */
  private retired: Omit<WorkerStats, 'nodeName'> = { ...ZERO, byTask: {} };
  private stopping = false;
  private stopPromise: Promise<void> | undefined;
  private resolveDone!: () => void;
  private respawnFailures = 0;
  private readonly execArgv: string[];

  constructor(options: WorkerOptions) {
    if (!options.appModule) {
      throw new ConfigError('the prefork pool needs appModule, the module that exports the app', {
        hint: "pass appModule: new URL('./tasks.ts', import.meta.url).href, or pool: 'solo' to run tasks in this process",
      });
    }
    this.options = options;
    this.app = options.app;
    this.appModule = options.appModule;
    this.logger = options.logger ?? options.app.logger;
    this.nodeName = options.nodeName ?? defaultNodeName();
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
    this.done = new Promise((r) => (this.resolveDone = r));
  }

  async start(): Promise<void> {
    const started = await Promise.allSettled(this.shares.map((_, i) => this.spawn(i)));
    const failed = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) {
      this.stopping = true;
      for (const c of this.children) c?.proc.kill('SIGKILL');
      throw failed.reason;
    }
    this.options.signal?.addEventListener('abort', () => void this.stop(), { once: true });
    if (this.options.signal?.aborted) void this.stop();
    this.logger.info(
      { node: this.nodeName, queues: this.options.queues ?? [this.app.settings.taskDefaultQueue], concurrency: this.shares.reduce((a, b) => a + b, 0), pool: 'prefork', processes: this.processes, pids: this.children.map((c) => c?.proc.pid), tasks: [...this.app.registry.keys()] },
      `worker ${this.nodeName} ready`,
    );
  }

  private spawn(index: number): Promise<Child> {
    // Secrets (broker URLs with passwords, keys) go over IPC, not into the child's environment block,
    // which /proc/<pid>/environ shows for the life of the process (issue 20 #11).
    const { plain, secret } = splitSecretEnv(process.env);
    const proc = fork(CHILD_MAIN, [], { execArgv: this.execArgv, serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: plain });
    const child: Child = { index, proc, owner: undefined, ready: false, running: new Map(), timers: new Map(), stats: undefined, culprit: undefined };
    this.children[index] = child;
    return new Promise<Child>((resolve, reject) => {
      proc.on('message', (m: FromChild) => {
        switch (m.t) {
          case 'ready':
            child.ready = true;
            child.owner = m.owner;
            resolve(child);
            break;
          case 'init-error':
            reject(new CeleriacError('ERR_WORKER_START', `a worker process could not start: ${m.message}`, { hint: 'check that the module given with -A loads, exports the app, and that the broker is reachable' }));
            break;
          case 'events':
            this.onTaskEvents(child, m.lines);
            break;
          case 'stats':
            child.stats = m.stats;
            break;
          case 'stopped':
            break;
        }
      });
      proc.on('error', (err) => this.logger.error({ err, pid: proc.pid }, 'worker process error'));
      proc.on('exit', (code, signal) => {
        if (!child.ready) reject(new CeleriacError('ERR_WORKER_START', `a worker process exited during start-up (${signal ?? `code ${code}`})`));
        void this.onExit(child, code, signal);
      });
      proc.send({
        t: 'init',
        env: secret,
        appModule: this.appModule,
        options: {
          queues: this.options.queues,
          concurrency: this.shares[index]!,
          prefetchMultiplier: this.options.prefetchMultiplier,
          nodeName: this.nodeName,
          shutdownTimeoutMs: this.options.shutdownTimeoutMs,
        },
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
        const timer = child.timers.get(key);
        if (timer) {
          clearTimeout(timer);
          child.timers.delete(key);
        }
      }
    }
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
    if (this.stopping && !child.culprit && child.running.size === 0) return;
    if (!child.ready) return;
    if (!child.culprit) this.logger.error({ pid: child.proc.pid, code, signal, running: child.running.size }, `worker process ${child.proc.pid} exited unexpectedly (${signal ?? `code ${code}`})`);
    try {
      await this.settleFor(child);
    } catch (err) {
      this.logger.error({ err }, 'could not settle the tasks of a lost worker process; the broker will redeliver them after its visibility timeout');
    }
    if (this.stopping) return;
    const delay = Math.min(10_000, this.respawnFailures === 0 ? 0 : 200 * 2 ** this.respawnFailures);
    setTimeout(() => {
      if (this.stopping) return;
      this.spawn(child.index).then(
        () => {
          this.respawnFailures = 0;
        },
        (err: unknown) => {
          this.respawnFailures++;
          this.logger.error({ err }, 'could not start a replacement worker process');
          const failed = this.children[child.index];
          if (failed) void this.onExit(failed, null, null);
        },
      );
    }, delay);
  }

  /** Settle, for a dead child, what it left behind (see the module comment). */
  private async settleFor(child: Child): Promise<void> {
    const drop: string[] = [];
    const failures: Array<{ event: Started; exc: ExceptionInfo }> = [];
    const culprit = child.culprit;
    for (const line of child.running.values()) {
      const event = decodeStartedLine(line);
      if (culprit && event.id === culprit.id && event.tag === culprit.tag) {
        failures.push({ event, exc: { exc_type: 'TimeLimitExceeded', exc_message: [(event.hardLimitMs ?? 0) / 1000], exc_module: 'celery.exceptions' } });
        if (event.lateAck) drop.push(event.tag);
        continue;
      }
      const requeue = event.lateAck && (culprit !== undefined || this.rejectOnWorkerLost(event.task));
      if (requeue) continue;
      failures.push({ event, exc: { exc_type: 'WorkerLostError', exc_message: [`Worker exited prematurely: process ${child.proc.pid} ${culprit ? 'killed at a hard time limit' : 'died'}`], exc_module: 'billiard.exceptions' } });
      if (event.lateAck) drop.push(event.tag);
    }
    const store = failures.length > 0 ? await this.app.resultStore() : undefined;
    if (store) {
      await store.storeMany(
        failures.map(({ event, exc }) => buildResultMeta({ taskId: event.id, status: 'FAILURE', result: exc, traceback: null, groupId: event.group, parentId: event.parentId })),
      );
    }
    if (child.owner) {
      const broker = await this.app.broker();
      if (broker.recoverOwner) {
        const n = await broker.recoverOwner(child.owner, { drop });
        if (n > 0) this.logger.warn({ restored: n, pid: child.proc.pid }, `requeued ${n} message(s) of worker process ${child.proc.pid}`);
      }
    }
  }

  private rejectOnWorkerLost(task: string): boolean {
    return this.app.registry.get(task)?.options.rejectOnWorkerLost ?? this.app.settings.taskRejectOnWorkerLost;
  }

  private retire(s: WorkerStats): void {
    addCounts(this.retired, s);
  }

  stats(): WorkerStats {
    const out: WorkerStats = { nodeName: this.nodeName, ...this.retired, byTask: { ...this.retired.byTask } };
    for (const c of this.children) {
      if (!c?.stats) continue;
      out.active += c.stats.active;
      out.held += c.stats.held;
      addCounts(out, c.stats);
    }
    return out;
  }

  /** Ask every child to reload its credentials (SIGHUP); the supervisor holds no connection that needs it. */
  async reload(): Promise<void> {
    for (const c of this.children) if (c?.proc.connected) c.proc.send({ t: 'reload' } satisfies ToChild);
  }

  /** Warm shutdown: each child stops consuming, requeues what it has not started and finishes what runs. */
  stop(): Promise<void> {
    this.stopPromise ??= (async () => {
      this.stopping = true;
      this.logger.info({ node: this.nodeName }, `worker ${this.nodeName} shutting down`);
      const live = this.children.filter((c): c is Child => c !== undefined && c.proc.exitCode === null);
      const deadline = (this.options.shutdownTimeoutMs ?? 30_000) + 15_000;
      await Promise.all(
        live.map(
          (c) =>
            new Promise<void>((resolve) => {
              const timer = setTimeout(() => c.proc.kill('SIGKILL'), deadline);
              c.proc.once('exit', () => {
                clearTimeout(timer);
                resolve();
              });
              if (c.proc.connected) c.proc.send({ t: 'stop' } satisfies ToChild);
              else c.proc.kill('SIGKILL');
            }),
        ),
      );
      this.logger.info({ node: this.nodeName, ...this.stats(), byTask: undefined }, `worker ${this.nodeName} stopped`);
      this.resolveDone();
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
