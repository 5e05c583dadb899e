/**
 * Remote control of a prefork worker: the supervisor answers for the node
 * (one reply per node, as Celery's does). It answers from what it knows
 * (its children's pids, running tasks and counters) and forwards over IPC
 * the commands that read or change its children's own state — `reserved`,
 * `scheduled` and `active` are gathered from them; `rate_limit`,
 * `time_limit`, `pool_grow`/`pool_shrink`, `add_consumer`/
 * `cancel_consumer` and `enable_events`/`disable_events` are applied by
 * each of them, and remembered so a replacement child starts with them.
 * Each child also listens on a queue of its own for `revoke` (no reply),
 * so it honours revokes at intake and aborts a revoked task it runs.
 *
 * The pool model: each child runs many tasks at once on its event loop, so
 * `pool_grow`/`pool_shrink` change the node's concurrency (tasks run at
 * once, Celery's `max-concurrency`), spread over the children, not the
 * number of processes (which only adds CPU parallelism).
 */
import type { Broker } from '../../core/broker.ts';
import type { Logger } from '../../observability/logging.ts';
import type { ChildAnswer } from '../prefork/forward.ts';
import type { ChildOverrides } from '../prefork/supervisor-ipc.ts';
import type { WorkerRuntime } from '../runtime.ts';
import { sleep } from '../state.ts';
import type { WorkerStats } from '../types.ts';
import type { ControlHost, RevokeOutcome, TaskInfo } from './commands.ts';
import { workerControlGuard, type ControlGuard } from './guard-hook.ts';
import { backendRevokedStore, memoryRevokedStore, RevokedSet, REVOKE_EXPIRES_S } from './revoked.ts';
import { startControlServer, type ControlServer } from './server.ts';
import { TERMINATE_GRACE_MS } from './worker-host.ts';

/** What the supervisor shows the control commands. */
export interface SupervisorView {
  readonly nodeName: string;
  readonly app: WorkerRuntime;
  readonly logger: Logger;
  /** The queues consumed (add_consumer/cancel_consumer change it; a replacement child consumes these). */
  readonly queues: string[];
  /** Tasks each child slot runs at once (pool_grow/pool_shrink change it; a replacement child gets its slot's). */
  readonly shares: number[];
  readonly prefetchMultiplier: number;
  /** Limits set by remote control, for replacement children. */
  readonly overrides: ChildOverrides;
  pids(): number[];
  /** Tasks running in the children (from their start reports), with the pid of the process running each. */
  running(): Array<{ id: string; task: string; tag: string; pid: number | undefined }>;
  stats(): WorkerStats;
  stop(): void;
  /** Kill the processes still running any of `ids` after `graceMs` (revoke with terminate and SIGKILL). */
  killRevoked(ids: readonly string[], graceMs: number): void;
  /** Send a command to the live children (all, or those of slots `to`) and gather their replies. */
  forward(method: string, args: Record<string, unknown>, timeoutMs: number, to?: readonly number[]): Promise<ChildAnswer[]>;
  /** Remember task events on or off, for replacement children. */
  setTaskEvents(on: boolean): void;
  /** Send the node's heartbeat now. */
  heartbeat(): void;
  guard?: ControlGuard;
}

/** What a child gets to abort a revoked task itself before its process is killed. */
const KILL_GRACE_MS = 1000;
/** How long the supervisor waits for its children's answers: the node must reply within Celery's 1 s. */
export const FORWARD_TIMEOUT_MS = 700;

const isErrorReply = (r: unknown): r is { error: unknown } => typeof r === 'object' && r !== null && 'error' in r;

export async function startSupervisorControl(v: SupervisorView, broker: Broker): Promise<ControlServer> {
  const rstore = await v.app.resultStore();
  const store = rstore ? backendRevokedStore(rstore.backend) : memoryRevokedStore();
  const revoked = new RevokedSet();
  revoked.merge(await store.load().catch(() => new Map<string, number>()));
  const info = (t: { id: string; task: string; tag: string; pid: number | undefined }): TaskInfo => ({
    id: t.id, name: t.task, args: [], kwargs: {}, type: t.task, hostname: v.nodeName, time_start: null, acknowledged: true,
    delivery_info: { exchange: '', routing_key: '', priority: 0, redelivered: null }, worker_pid: t.pid ?? null,
  });
  /** The lists the children answered with, concatenated (a child that did not answer in time adds nothing). */
  const gather = async <T>(method: string): Promise<{ items: T[]; silent: Set<number | undefined> }> => {
    const items: T[] = [];
    const silent = new Set<number | undefined>();
    for (const a of await v.forward(method, {}, FORWARD_TIMEOUT_MS)) {
      if (Array.isArray(a.result)) items.push(...(a.result as T[]));
      else silent.add(a.pid);
    }
    if (silent.size > 0) v.logger.warn({ method, pids: [...silent] }, `inspect ${method}: ${silent.size} worker process(es) did not answer in time (a task may block their event loop); their tasks are not listed`);
    return { items, silent };
  };
  /** Have every child (or those of slots `to`) apply a change; throws when one refused it. */
  const apply = async (method: string, args: Record<string, unknown>, to?: readonly number[]): Promise<void> => {
    const answers = await v.forward(method, args, FORWARD_TIMEOUT_MS, to);
    const late = answers.filter((a) => a.timedOut);
    // A child that has not answered yet still gets the command (IPC keeps order); it applies it when its event loop is free.
    if (late.length > 0) v.logger.warn({ method, pids: late.map((a) => a.pid) }, `${method}: ${late.length} worker process(es) did not confirm in time; they apply it when their event loop is free`);
    const refused = answers.filter((a) => (!a.timedOut && a.error !== undefined) || isErrorReply(a.result));
    if (refused.length > 0) {
      const why = refused.map((a) => (a.error !== undefined ? a.error : String((a.result as { error: unknown }).error)));
      throw new Error(`${refused.length} of ${answers.length} worker processes refused ${method}: ${[...new Set(why)].join('; ')}`);
    }
  };
  const concurrency = (): number => v.shares.reduce((a, b) => a + b, 0);
  const host: ControlHost = {
    nodeName: v.nodeName,
    revoked,
    startedAt: Date.now(),
    registered: () => [...v.app.registry.keys()].sort(),
    totals: () => v.stats().byTask,
    concurrency,
    processes: () => v.pids(),
    prefetch: () => concurrency() * v.prefetchMultiplier,
    brokerInfo: () => ({ transport: v.app.settings.brokerUrl ? new URL(v.app.settings.brokerUrl).protocol.replace(/:$/, '') : 'sqlite' }),
    async active() {
      const { items, silent } = await gather<TaskInfo>('active');
      // A child that cannot answer (a task blocks its event loop) is shown from its start reports.
      for (const t of v.running()) if (silent.has(t.pid)) items.push(info(t));
      return items;
    },
    reserved: async () => (await gather<TaskInfo>('reserved')).items,
    scheduled: async () => (await gather<{ eta: string; priority: number; request: TaskInfo }>('scheduled')).items,
    queues: () => [...v.queues],
    conf: () => ({ ...v.app.settings }),
    async revoke(ids, terminate, signal): Promise<RevokeOutcome | void> {
      // The children receive the same broadcast on their own queues and act on it (abort when terminating);
      // SIGKILL also kills a process whose task did not stop within the grace.
      const kill = terminate && (signal === 'SIGKILL' || signal === '9' || signal === 'KILL');
      if (kill) v.killRevoked(ids, KILL_GRACE_MS);
      const until = Date.now() + REVOKE_EXPIRES_S * 1000;
      for (const id of ids) revoked.add(id, until);
      const persisted = store.add(ids, REVOKE_EXPIRES_S).catch((err: unknown) => v.logger.warn({ err }, 'could not persist revoked ids'));
      if (!terminate) return void (await persisted);
      const runningIds = () => new Set(v.running().map((t) => t.id));
      const terminated = ids.filter((id) => runningIds().has(id));
      const deadline = Date.now() + TERMINATE_GRACE_MS;
      while (!kill && terminated.some((id) => runningIds().has(id)) && Date.now() < deadline) await sleep(10);
      await persisted;
      const now = runningIds();
      const stillRunning = kill ? [] : terminated.filter((id) => now.has(id));
      if (stillRunning.length > 0) v.logger.warn({ ids: stillRunning }, `revoked task(s) ${stillRunning.join(', ')} still running ${TERMINATE_GRACE_MS / 1000} s after their abort signal`);
      return { terminated, stillRunning, graceMs: TERMINATE_GRACE_MS, hint: 'they ignore their abort signal and run to their end; revoke with signal SIGKILL to kill their process' };
    },
    async setRateLimit(task, rate) {
      const def = v.app.registry.get(task);
      if (!def) return false;
      def.options.rateLimit = rate ?? undefined;
      v.overrides.rateLimits[task] = rate;
      await apply('rate_limit', { task_name: task, rate_limit: rate ?? 0 });
      return true;
    },
    async setTimeLimit(task, soft, hard) {
      const def = v.app.registry.get(task);
      if (!def) return false;
      def.options.softTimeLimit = soft ?? undefined;
      def.options.timeLimit = hard ?? undefined;
      v.overrides.timeLimits[task] = { soft, hard };
      await apply('time_limit', { task_name: task, soft, hard });
      return true;
    },
    async addConsumer(queue) {
      v.queues.push(queue);
      await apply('add_consumer', { queue });
    },
    async cancelConsumer(queue) {
      const i = v.queues.indexOf(queue);
      if (i < 0) return;
      v.queues.splice(i, 1);
      await apply('cancel_consumer', { queue });
    },
    // One more (or one fewer) task at once for the child with the fewest (most), n times: the shares stay even.
    async poolGrow(n) {
      const delta = v.shares.map(() => 0);
      for (let k = 0; k < Math.max(0, Math.floor(n)); k++) {
        const i = v.shares.indexOf(Math.min(...v.shares));
        v.shares[i]!++;
        delta[i]!++;
      }
      await Promise.all(delta.map((d, i) => (d > 0 ? apply('pool_grow', { n: d }, [i]) : undefined)));
      return true;
    },
    async poolShrink(n) {
      const delta = v.shares.map(() => 0);
      for (let k = 0; k < Math.max(0, Math.floor(n)); k++) {
        const i = v.shares.indexOf(Math.max(...v.shares));
        if (v.shares[i]! <= 1) break;
        v.shares[i]!--;
        delta[i]!++;
      }
      if (delta.every((d) => d === 0)) return false;
      await Promise.all(delta.map((d, i) => (d > 0 ? apply('pool_shrink', { n: d }, [i]) : undefined)));
      return true;
    },
    async setTaskEvents(on) {
      v.setTaskEvents(on);
      await apply(on ? 'enable_events' : 'disable_events', {});
    },
    heartbeat: () => v.heartbeat(),
    shutdown: () => v.stop(),
  };
  const guard = v.guard ?? workerControlGuard({ settings: v.app.settings, logger: v.logger, nodeName: v.nodeName });
  return startControlServer({ broker, host, guard, logger: v.logger });
}
