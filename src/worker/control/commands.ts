/**
 * The remote-control commands a Celeriac worker answers, with Celery
 * 5.2.6's names, arguments and reply shapes, each tagged with its class:
 * `inspect` (read-only) or `control` (changes the worker), so a guard can
 * allow the first and refuse the second.
 */
import { celeryConfTable, withDefaultsArgument } from '../../config/celery-conf.ts';
import { securityCounters } from '../../observability/security-events.ts';
import { REVOKE_EXPIRES_S, type RevokedSet } from './revoked.ts';

export type CommandClass = 'inspect' | 'control';

/** A task as `inspect active/reserved` lists it (Celery's request dict). */
export interface TaskInfo {
  id: string;
  name: string;
  args: unknown[];
  kwargs: Record<string, unknown>;
  type: string;
  hostname: string;
  time_start: number | null;
  acknowledged: boolean;
  delivery_info: { exchange: string; routing_key: string; priority: number; redelivered: boolean | null };
  worker_pid: number | null;
}

type MaybePromise<T> = T | Promise<T>;

/**
 * What the commands need from the worker that hosts them. A prefork
 * supervisor answers some of them by asking its children (hence the
 * promises); a worker process answers from its own state.
 */
export interface ControlHost {
  readonly nodeName: string;
  readonly revoked: RevokedSet;
  readonly startedAt: number;
  registered(): string[];
  /** Tasks run, by name (`stats.total`). */
  totals(): Record<string, number>;
  concurrency(): number;
  processes(): number[];
  prefetch(): number;
  brokerInfo(): Record<string, unknown>;
  active(): MaybePromise<TaskInfo[]>;
  reserved(): MaybePromise<TaskInfo[]>;
  scheduled(): MaybePromise<Array<{ eta: string; priority: number; request: TaskInfo }>>;
  queues(): string[];
  conf(): Record<string, unknown>;
  /**
   * Persist and honour `ids`; with `terminate`, stop the running ones with
   * `signal` and say which were running (`terminated`) and which of those
   * were still running when the host stopped waiting (`stillRunning`).
   */
  revoke(ids: string[], terminate: boolean, signal: string): Promise<RevokeOutcome | void>;
  setRateLimit(task: string, rate: string | null): MaybePromise<boolean>;
  setTimeLimit(task: string, soft: number | null, hard: number | null): MaybePromise<boolean>;
  addConsumer(queue: string): Promise<void>;
  cancelConsumer(queue: string): Promise<void>;
  /** Grow or shrink the number of tasks run at once; false when the pool cannot. */
  poolGrow(n: number): MaybePromise<boolean>;
  poolShrink(n: number): MaybePromise<boolean>;
  setTaskEvents(on: boolean): MaybePromise<void>;
  heartbeat(): void;
  shutdown(): void;
}

/** What a revoke with terminate found and did. */
export interface RevokeOutcome {
  /** The ids that were running here and were told to stop. */
  terminated: string[];
  /** Those still running at the end of the grace (a task that ignores its abort signal, in the solo pool). */
  stillRunning?: string[];
  /** The grace waited, in ms (for the reply's wording). */
  graceMs?: number;
  /** What happens to those still running (said in the reply). */
  hint?: string;
}

export interface ControlContext {
  host: ControlHost;
  clock: () => number;
}

type Args = Record<string, unknown>;
type Handler = (ctx: ControlContext, args: Args) => unknown | Promise<unknown>;

export interface CommandSpec {
  cls: CommandClass;
  /** False when Celery sends no reply (shutdown). */
  replies?: boolean;
  run: Handler;
}

const ok = (text: string) => ({ ok: text });
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

function ids(v: unknown): string[] {
  const list = Array.isArray(v) ? v : [v];
  return list.filter((x): x is string => typeof x === 'string' && x.length > 0 && x.length <= 255);
}

function stats(ctx: ControlContext): Record<string, unknown> {
  const h = ctx.host;
  const u = process.resourceUsage();
  return {
    total: h.totals(),
    pid: process.pid,
    clock: String(ctx.clock()),
    uptime: Math.floor((Date.now() - h.startedAt) / 1000),
    pool: { 'max-concurrency': h.concurrency(), processes: h.processes(), 'max-tasks-per-child': 'N/A', 'put-guarded-by-semaphore': false, timeouts: [0, 0] },
    broker: h.brokerInfo(),
    prefetch_count: h.prefetch(),
    rusage: {
      utime: u.userCPUTime / 1e6, stime: u.systemCPUTime / 1e6, maxrss: u.maxRSS, ixrss: u.sharedMemorySize, idrss: u.unsharedDataSize,
      isrss: u.unsharedStackSize, minflt: u.minorPageFault, majflt: u.majorPageFault, nswap: u.swappedOut, inblock: u.fsRead, oublock: u.fsWrite,
      msgsnd: u.ipcSent, msgrcv: u.ipcReceived, nsignals: u.signalsCount, nvcsw: u.voluntaryContextSwitches, nivcsw: u.involuntaryContextSwitches,
    },
    // Not in Celery: this worker's security counters (#20 item 16).
    celeriac: { security: securityCounters() },
  };
}

function queueInfo(name: string): Record<string, unknown> {
  return {
    name, exchange: { name, type: 'direct', arguments: null, durable: true, passive: false, auto_delete: false, delivery_mode: null, no_declare: false },
    routing_key: name, queue_arguments: null, binding_arguments: null, consumer_arguments: null, durable: true, exclusive: false,
    auto_delete: false, no_ack: false, alias: null, bindings: [], no_declare: null, expires: null, message_ttl: null, max_length: null,
    max_length_bytes: null, max_priority: null,
  };
}

async function queryTask(h: ControlHost, wanted: string[]): Promise<Record<string, [string, TaskInfo]>> {
  const out: Record<string, [string, TaskInfo]> = {};
  const want = new Set(wanted);
  const [active, reserved, scheduled] = await Promise.all([h.active(), h.reserved(), h.scheduled()]);
  for (const t of active) if (want.has(t.id)) out[t.id] = ['active', t];
  for (const t of reserved) if (want.has(t.id)) out[t.id] = ['reserved', t];
  for (const s of scheduled) if (want.has(s.request.id)) out[s.request.id] = ['scheduled', s.request];
  return out;
}

/**
 * Celery's reply to a revoke with terminate (`terminate: <ids>`, or
 * `terminate: tasks unknown` when none ran here), with what Celery cannot
 * say: which tasks were still running when the worker stopped waiting.
 */
function terminateReply(o: RevokeOutcome | undefined): { ok: string } {
  if (!o || o.terminated.length === 0) return ok('terminate: tasks unknown');
  const text = `terminate: ${o.terminated.join(', ')}`;
  if (!o.stillRunning?.length) return ok(text);
  const grace = ((o.graceMs ?? 0) / 1000).toString();
  return ok(`${text}; still running ${grace} s after their abort signal: ${o.stillRunning.join(', ')}${o.hint ? ` (${o.hint})` : ''}`);
}

/** The command table: Celery's method name → class and handler. */
export const COMMANDS: Readonly<Record<string, CommandSpec>> = {
  ping: { cls: 'inspect', run: () => ok('pong') },
  stats: { cls: 'inspect', run: (ctx) => stats(ctx) },
  active: { cls: 'inspect', run: (ctx) => ctx.host.active() },
  reserved: { cls: 'inspect', run: (ctx) => ctx.host.reserved() },
  scheduled: { cls: 'inspect', run: (ctx) => ctx.host.scheduled() },
  registered: { cls: 'inspect', run: (ctx) => ctx.host.registered() },
  revoked: { cls: 'inspect', run: (ctx) => ctx.host.revoked.list() },
  active_queues: { cls: 'inspect', run: (ctx) => ctx.host.queues().map(queueInfo) },
  query_task: { cls: 'inspect', run: (ctx, a) => queryTask(ctx.host, ids(a.ids ?? a.task_id)) },
  // Celery's setting names (Celeriac's own under theirs), secrets masked; `with_defaults` as Celery's.
  conf: { cls: 'inspect', run: (ctx, a) => celeryConfTable(ctx.host.conf(), { withDefaults: withDefaultsArgument(a) }) },
  report: { cls: 'inspect', run: (ctx) => ok(`celeriac node ${ctx.host.nodeName}, node ${process.version}, pid ${process.pid}`) },
  clock: { cls: 'inspect', run: (ctx) => ({ clock: ctx.clock() }) },
  hello: { cls: 'inspect', run: (ctx) => ({ revoked: Object.fromEntries(ctx.host.revoked.list().map((id) => [id, Date.now() / 1000 + REVOKE_EXPIRES_S])), clock: ctx.clock() }) },
  revoke: {
    cls: 'control',
    run: async (ctx, a) => {
      const list = ids(a.task_id);
      const terminate = a.terminate === true;
      const outcome = await ctx.host.revoke(list, terminate, str(a.signal) ?? 'SIGTERM');
      return terminate ? terminateReply(outcome ?? undefined) : ok(`tasks ${list.join(', ')} flagged as revoked`);
    },
  },
  // Celery's `terminate <signal> <ids>`: revoke with terminate.
  terminate: {
    cls: 'control',
    run: async (ctx, a) => COMMANDS.revoke!.run(ctx, { task_id: a.task_id, terminate: true, signal: a.signal }),
  },
  rate_limit: {
    cls: 'control',
    run: async (ctx, a) => {
      const task = str(a.task_name) ?? '';
      const rate = a.rate_limit === null || a.rate_limit === undefined || a.rate_limit === 0 || a.rate_limit === '0' ? null : String(a.rate_limit);
      if (!(await ctx.host.setRateLimit(task, rate))) return { error: `unknown task ${task}` };
      return ok(rate === null ? 'rate limit disabled successfully' : 'new rate limit set successfully');
    },
  },
  time_limit: {
    cls: 'control',
    run: async (ctx, a) => {
      const task = str(a.task_name) ?? '';
      if (!(await ctx.host.setTimeLimit(task, num(a.soft), num(a.hard)))) return { error: `unknown task ${task}` };
      return ok('time limits set successfully');
    },
  },
  shutdown: { cls: 'control', replies: false, run: (ctx) => ctx.host.shutdown() },
  pool_grow: { cls: 'control', run: async (ctx, a) => ((await ctx.host.poolGrow(num(a.n) ?? 1)) ? ok('pool will grow') : { error: 'pool does not support autoscale' }) },
  pool_shrink: { cls: 'control', run: async (ctx, a) => ((await ctx.host.poolShrink(num(a.n) ?? 1)) ? ok('pool will shrink') : { error: 'pool cannot shrink further' }) },
  add_consumer: {
    cls: 'control',
    run: async (ctx, a) => {
      const queue = str(a.queue) ?? '';
      if (ctx.host.queues().includes(queue)) return ok(`already consuming from ${JSON.stringify(queue)}`);
      await ctx.host.addConsumer(queue);
      return ok(`add consumer ${queue}`);
    },
  },
  cancel_consumer: {
    cls: 'control',
    run: async (ctx, a) => {
      const queue = str(a.queue) ?? '';
      await ctx.host.cancelConsumer(queue);
      return ok(`no longer consuming from ${queue}`);
    },
  },
  enable_events: { cls: 'control', run: async (ctx) => (await ctx.host.setTaskEvents(true), ok('task events enabled')) },
  disable_events: { cls: 'control', run: async (ctx) => (await ctx.host.setTaskEvents(false), ok('task events disabled')) },
  heartbeat: { cls: 'control', run: (ctx) => (ctx.host.heartbeat(), null) },
};
