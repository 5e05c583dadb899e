/**
 * The `ControlHost` of one worker process (the solo pool): what the
 * control commands read and change in its state.
 */
import { constants as osConstants } from 'node:os';
import { redactValue } from '../../config/redact.ts';
import type { Consumer } from '../../core/broker.ts';
import type { RevokedStore } from '../../core/revoked-store.ts';
import { buildResultMeta } from '../../protocol/result-meta.ts';
import { revokedRecord } from '../exception-records.ts';
import { finalize } from '../outcomes.ts';
import { ackOnce, storeMeta } from '../settle.ts';
import { sleep, type Job, type WorkerState } from '../state.ts';
import type { ControlHost, RevokeOutcome, TaskInfo } from './commands.ts';
import { REVOKE_EXPIRES_S } from './revoked.ts';
import { afterRevokedStored } from '../canvas/outcomes.ts';

export interface WorkerHostOptions {
  /** The queues consumed now (changed by add_consumer/cancel_consumer). */
  queues: string[];
  store: RevokedStore;
  /** Consume `queues` from now on (replaces the consumer). */
  consume(queues: string[]): Promise<Consumer>;
  shutdown(): void;
  /** Turn task events on or off (#16 item 1); undefined until the events module is wired. */
  setTaskEvents?: (on: boolean) => void;
  heartbeat?: () => void;
  /** How long a revoke with terminate waits for the task to stop before it replies (default TERMINATE_GRACE_MS). */
  terminateGraceMs?: number;
}

/**
 * How long a revoke with terminate waits for a task to honour its abort
 * signal before replying: under the 1 s Celery's tools wait for replies.
 */
export const TERMINATE_GRACE_MS = 500;

/** True when the job's id is revoked: it is then stored REVOKED and acked (as Celery does). */
export function revokedJob(w: WorkerState, job: Job, reason = 'revoked'): boolean {
  const { req } = job;
  if (!w.revoked.has(req.id)) return false;
  w.counters.revoked++;
  if (w.events?.taskEvents) w.events.revoked(req, { terminated: reason === 'terminated', signum: reason === 'terminated' ? (job.terminatedSignum ?? null) : null });
  w.logger.info({ id: req.id, task: req.task }, `task ${req.task}[${req.id}] ${reason}; discarding`);
  const meta = buildResultMeta({ taskId: req.id, status: 'REVOKED', result: revokedRecord(reason), traceback: null, groupId: req.group, parentId: req.parentId });
  finalize(w, job, async () => {
    if (!req.ignoreResult) await storeMeta(w, meta, req);
    await afterRevokedStored(w, req, meta.result);
    await ackOnce(w, job);
  });
  return true;
}

function taskInfo(w: WorkerState, job: Job, started: number | null): TaskInfo {
  const { req, delivery } = job;
  return {
    id: req.id,
    name: req.task,
    args: redactValue(req.args) as unknown[],
    kwargs: redactValue(req.kwargs) as Record<string, unknown>,
    type: req.task,
    hostname: w.nodeName,
    time_start: started === null ? null : started / 1000,
    acknowledged: job.acked,
    delivery_info: { exchange: '', routing_key: delivery.queue, priority: req.priority ?? 0, redelivered: delivery.redelivered },
    worker_pid: started === null ? null : process.pid,
  };
}

function brokerInfo(url: string | undefined): Record<string, unknown> {
  if (!url) return { transport: 'sqlite' };
  try {
    const u = new URL(url);
    const transport = u.protocol.replace(/:$/, '');
    return {
      hostname: u.hostname, userid: null, virtual_host: u.pathname.replace(/^\//, '') || (transport.startsWith('redis') ? '0' : '/'),
      port: u.port ? Number(u.port) : null, insist: false, ssl: transport.endsWith('s'), transport,
    };
  } catch {
    return { transport: 'unknown' };
  }
}

/** The control host of the worker whose state is `w`. */
export function workerControlHost(w: WorkerState, o: WorkerHostOptions): ControlHost {
  const startedAt = Date.now();
  const taskDef = (name: string) => w.rt.registry.get(name);
  return {
    nodeName: w.nodeName,
    revoked: w.revoked,
    startedAt,
    registered: () => [...w.rt.registry.keys()].sort(),
    totals: () => ({ ...w.byTask }),
    concurrency: () => w.concurrency,
    processes: () => [process.pid],
    prefetch: () => w.basePrefetch + w.heldEta,
    brokerInfo: () => brokerInfo(w.rt.settings.brokerUrl),
    active: () => [...w.running].map(([job, t]) => taskInfo(w, job, t)),
    reserved: () => [...w.pending, ...[...w.held.keys()].filter((j) => j.req.eta === null || j.req.eta <= Date.now())].map((j) => taskInfo(w, j, null)),
    scheduled: () =>
      [...w.held.keys()]
        .filter((j) => j.req.eta !== null && j.req.eta > Date.now())
        .map((j) => ({ eta: new Date(j.req.eta!).toISOString(), priority: j.req.priority ?? 0, request: taskInfo(w, j, null) })),
    queues: () => [...o.queues],
    conf: () => ({ ...(redactValue(w.rt.settings) as Record<string, unknown>) }),
    async revoke(ids, terminate, signal) {
      const until = Date.now() + REVOKE_EXPIRES_S * 1000;
      for (const id of ids) w.revoked.add(id, until);
      const persisted = o.store.add(ids, REVOKE_EXPIRES_S).catch((err: unknown) => w.logger.warn({ err }, 'could not persist revoked ids; honoured by this worker only'));
      const outcome = terminate ? await terminateRunning(w, ids, signal, o.terminateGraceMs ?? TERMINATE_GRACE_MS) : undefined;
      await persisted;
      return outcome;
    },
    setRateLimit(task, rate) {
      const def = taskDef(task);
      if (!def) return false;
      def.options.rateLimit = rate ?? undefined;
      w.buckets.delete(task);
      return true;
    },
    setTimeLimit(task, soft, hard) {
      const def = taskDef(task);
      if (!def) return false;
      def.options.softTimeLimit = soft ?? undefined;
      def.options.timeLimit = hard ?? undefined;
      return true;
    },
    async addConsumer(queue) {
      o.queues.push(queue);
      await replace(w, o);
    },
    async cancelConsumer(queue) {
      const i = o.queues.indexOf(queue);
      if (i < 0) return;
      o.queues.splice(i, 1);
      await replace(w, o);
    },
    poolGrow(n) {
      resize(w, w.concurrency + Math.max(0, Math.floor(n)));
      return true;
    },
    poolShrink(n) {
      if (w.concurrency <= 1) return false;
      resize(w, Math.max(1, w.concurrency - Math.max(0, Math.floor(n))));
      return true;
    },
    setTaskEvents(on) {
      // Not claimed done when this build has no task events (#16 item 1 wires setTaskEvents).
      if (!o.setTaskEvents) throw new Error('task events are not available in this worker yet');
      o.setTaskEvents(on);
    },
    heartbeat: () => o.heartbeat?.(),
    shutdown: () => o.shutdown(),
  };
}

/**
 * Change how many tasks run at once, and the prefetch window with it (as
 * Celery's pool_grow/pool_shrink update the prefetch count): tasks already
 * running finish; a smaller pool only starts fewer.
 */
function resize(w: WorkerState, concurrency: number): void {
  const multiplier = w.basePrefetch / w.concurrency;
  w.concurrency = concurrency;
  w.basePrefetch = Math.max(1, Math.round(concurrency * multiplier));
  w.consumer?.setPrefetch(w.basePrefetch + w.heldEta);
  w.drain();
}

/**
 * Revoke with terminate in this process: the running task's abort signal
 * fires (a JavaScript function cannot be killed from outside, so only a
 * task that listens to it stops), then wait up to `graceMs` for it to end
 * and report those that did not. One that ignores its signal runs on and
 * is recorded as it ends (SUCCESS if it succeeds); the log says so.
 */
async function terminateRunning(w: WorkerState, ids: readonly string[], signal: string, graceMs: number): Promise<RevokeOutcome> {
  const jobs = [...w.running.keys()].filter((job) => ids.includes(job.req.id) && job.exec);
  const signum = signalNumber(signal);
  for (const job of jobs) {
    job.terminatedSignum = signum;
    w.logger.info({ id: job.req.id, signal }, `terminating task ${job.req.task}[${job.req.id}] (${signal}): its abort signal fires`);
    w.pool.abort?.(job.exec!.jobId, new Error(`revoked: terminated (${signal})`));
  }
  const deadline = Date.now() + graceMs;
  while (jobs.some((j) => w.running.has(j)) && Date.now() < deadline) await sleep(10);
  const still = jobs.filter((j) => w.running.has(j));
  for (const job of still) {
    w.logger.warn(
      { id: job.req.id, task: job.req.task, graceMs },
      `task ${job.req.task}[${job.req.id}] is still running ${graceMs / 1000} s after its revoke with terminate: it ignores its abort signal (currentTask().signal) and runs to its end (only a prefork worker revoking with signal SIGKILL kills it, with its process)`,
    );
  }
  return {
    terminated: [...new Set(jobs.map((j) => j.req.id))],
    stillRunning: [...new Set(still.map((j) => j.req.id))],
    graceMs,
    hint: 'they ignore their abort signal and this pool cannot kill them: they run to their end; with the prefork pool, revoke with signal SIGKILL kills their process',
  };
}

/** A signal's number from its name (`SIGTERM`, `TERM`) or digits; null when unknown. */
function signalNumber(signal: string): number | null {
  if (/^\d+$/.test(signal)) return Number(signal);
  const name = (signal.startsWith('SIG') ? signal : `SIG${signal}`).toUpperCase() as keyof typeof osConstants.signals;
  return osConstants.signals[name] ?? null;
}

/** Consume the new queue list; the old consumer's deliveries stay valid and settle as usual. */
async function replace(w: WorkerState, o: WorkerHostOptions): Promise<void> {
  const old = w.consumer;
  w.consumer = o.queues.length > 0 ? await o.consume(o.queues) : undefined;
  await old?.cancel();
}
