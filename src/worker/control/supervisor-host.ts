/**
 * Remote control of a prefork worker: the supervisor answers for the node
 * (one reply per node, as Celery's does), from what it knows — its
 * children's pids, running tasks and counters. Each child listens on a
 * queue of its own for `revoke` only (no reply), so it honours revokes at
 * intake and aborts a revoked task it runs when asked to terminate.
 */
import type { Broker } from '../../core/broker.ts';
import type { Logger } from '../../observability/logging.ts';
import type { WorkerRuntime } from '../runtime.ts';
import type { WorkerStats } from '../types.ts';
import type { ControlHost, TaskInfo } from './commands.ts';
import { workerControlGuard, type ControlGuard } from './guard-hook.ts';
import { backendRevokedStore, memoryRevokedStore, RevokedSet, REVOKE_EXPIRES_S } from './revoked.ts';
import { startControlServer, type ControlServer } from './server.ts';

/** What the supervisor shows the control commands. */
export interface SupervisorView {
  readonly nodeName: string;
  readonly app: WorkerRuntime;
  readonly logger: Logger;
  queues: string[];
  concurrency: number;
  prefetch: number;
  pids(): number[];
  /** Tasks running in the children (from their start reports). */
  running(): Array<{ id: string; task: string; tag: string }>;
  stats(): WorkerStats;
  stop(): void;
  /** Kill the processes still running any of `ids` after `graceMs` (revoke with terminate and SIGKILL). */
  killRevoked(ids: readonly string[], graceMs: number): void;
  guard?: ControlGuard;
}

/** What a child gets to abort a revoked task itself before its process is killed. */
const KILL_GRACE_MS = 1000;

export async function startSupervisorControl(v: SupervisorView, broker: Broker): Promise<ControlServer> {
  const rstore = await v.app.resultStore();
  const store = rstore ? backendRevokedStore(rstore.backend) : memoryRevokedStore();
  const revoked = new RevokedSet();
  revoked.merge(await store.load().catch(() => new Map<string, number>()));
  const unsupported = (what: string) => (): never => {
    throw new Error(`${what} is not supported by the prefork pool yet (use --pool solo)`);
  };
  const info = (t: { id: string; task: string; tag: string }): TaskInfo => ({
    id: t.id, name: t.task, args: [], kwargs: {}, type: t.task, hostname: v.nodeName, time_start: null, acknowledged: true,
    delivery_info: { exchange: '', routing_key: '', priority: 0, redelivered: null }, worker_pid: null,
  });
  const host: ControlHost = {
    nodeName: v.nodeName,
    revoked,
    startedAt: Date.now(),
    registered: () => [...v.app.registry.keys()].sort(),
    totals: () => v.stats().byTask,
    concurrency: () => v.concurrency,
    processes: () => v.pids(),
    prefetch: () => v.prefetch,
    brokerInfo: () => ({ transport: v.app.settings.brokerUrl ? new URL(v.app.settings.brokerUrl).protocol.replace(/:$/, '') : 'sqlite' }),
    active: () => v.running().map(info),
    reserved: () => [],
    scheduled: () => [],
    queues: () => [...v.queues],
    conf: () => ({ ...v.app.settings }),
    async revoke(ids, terminate, signal) {
      // The children receive the same broadcast on their own queues and act on it (abort when terminating);
      // SIGKILL also kills a process whose task did not stop within the grace.
      if (terminate && (signal === 'SIGKILL' || signal === '9' || signal === 'KILL')) v.killRevoked(ids, KILL_GRACE_MS);
      const until = Date.now() + REVOKE_EXPIRES_S * 1000;
      for (const id of ids) revoked.add(id, until);
      await store.add(ids, REVOKE_EXPIRES_S).catch((err: unknown) => v.logger.warn({ err }, 'could not persist revoked ids'));
    },
    setRateLimit: unsupported('rate_limit'),
    setTimeLimit: unsupported('time_limit'),
    addConsumer: async () => unsupported('add_consumer')(),
    cancelConsumer: async () => unsupported('cancel_consumer')(),
    poolGrow: unsupported('pool_grow'),
    poolShrink: unsupported('pool_shrink'),
    setTaskEvents: unsupported('enable_events/disable_events'),
    heartbeat: () => undefined,
    shutdown: () => v.stop(),
  };
  const guard = v.guard ?? workerControlGuard({ settings: v.app.settings, logger: v.logger, nodeName: v.nodeName });
  return startControlServer({ broker, host, guard, logger: v.logger });
}
