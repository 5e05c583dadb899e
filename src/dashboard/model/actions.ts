/**
 * The dashboard's actions, through `app.control` and the broker. Each
 * returns an `ActionResult` with the workers' replies; none throws for a
 * refused or failed action (the server shows and audits the result). Input
 * is checked here too, since the server passes what a user typed.
 */
import type { App } from '../../client/app.ts';
import type { ControlReply } from '../../client/control.ts';
import { deadLetterId, type Broker } from '../../core/broker.ts';
import { redactAll } from '../../config/redact.ts';
import type { ActionResult, DashboardActions } from './types.ts';

export interface ActionsContext {
  app: App;
  /** Queues to look in for a task's dead letter (retry). */
  queues(): Promise<string[]>;
  /** Queue a task was sent to, when known. */
  queueOf(taskId: string): string | undefined;
  /** Workers consuming a queue now (asks them). */
  consumersOf(queue: string): Promise<string[]>;
  /** Paused queues and the workers to resume. */
  paused: Map<string, string[]>;
  /** Called after an action that changes queues or workers (refresh caches). */
  changed(): void;
  /** How long to wait for replies, ms (default 2,000). */
  timeoutMs?: number;
}

const NAME_RE = /^[^\s\u0000-\u001f]{1,255}$/;
const SIGNALS = new Set(['SIGTERM', 'SIGKILL', 'SIGINT', 'SIGQUIT', 'SIGHUP', 'SIGUSR1', 'SIGUSR2', 'TERM', 'KILL', 'INT', 'QUIT', 'HUP', 'USR1', 'USR2']);
const RATE_RE = /^(?:\d+(?:\.\d+)?)(?:\/[smh])?$/;

function refused(message: string): ActionResult {
  return { ok: false, message };
}

function failed(what: string, err: unknown): ActionResult {
  return { ok: false, message: `${what} failed: ${redactAll((err as Error)?.message ?? String(err)).slice(0, 500)}` };
}

/** `[{host: {ok: …}}, {host: {error: …}}]` as per-worker results. */
export function replyList(replies: readonly ControlReply[]): NonNullable<ActionResult['replies']> {
  const out: NonNullable<ActionResult['replies']> = [];
  for (const r of replies) {
    for (const [worker, body] of Object.entries(r)) {
      const b = body && typeof body === 'object' ? (body as Record<string, unknown>) : {};
      const error = b.error;
      const ok = error === undefined;
      const text = ok ? (typeof b.ok === 'string' ? b.ok : JSON.stringify(body) ?? 'ok') : typeof error === 'string' ? error : JSON.stringify(error);
      out.push({ worker: worker.slice(0, 255), ok, message: redactAll(String(text)).slice(0, 500) });
    }
  }
  return out.sort((a, b) => a.worker.localeCompare(b.worker));
}

function summary(verb: string, replies: NonNullable<ActionResult['replies']>, expected?: number): ActionResult {
  const good = replies.filter((r) => r.ok).length;
  const bad = replies.length - good;
  const missing = expected !== undefined ? Math.max(0, expected - replies.length) : 0;
  const parts = [`${verb}; ${replies.length} ${replies.length === 1 ? 'worker' : 'workers'} replied`];
  if (bad) parts.push(`${bad} refused`);
  if (missing) parts.push(`${missing} did not reply in time`);
  const ok = expected !== undefined ? good === expected && expected > 0 : bad === 0;
  return { ok, message: parts.join(', '), replies };
}

export function createActions(ctx: ActionsContext): DashboardActions {
  const timeoutMs = ctx.timeoutMs ?? 2000;
  const control = () => ctx.app.control;
  const broker = (): Promise<Broker> => ctx.app.broker();
  const checkName = (what: string, v: string): string | undefined => (typeof v === 'string' && NAME_RE.test(v) ? undefined : `invalid ${what}: expected 1 to 255 characters without spaces or control characters`);
  const checkN = (n: number): string | undefined => (Number.isInteger(n) && n >= 1 && n <= 1000 ? undefined : 'n must be an integer from 1 to 1000');

  /** One control command to one worker, with its reply. */
  const toWorker = async (verb: string, worker: string, send: (o: { reply: true; destination: string[]; timeoutMs: number }) => Promise<ControlReply[]>): Promise<ActionResult> => {
    const bad = checkName('worker', worker);
    if (bad) return refused(bad);
    try {
      const result = summary(verb, replyList(await send({ reply: true, destination: [worker], timeoutMs })), 1);
      ctx.changed();
      return result;
    } catch (err) {
      return failed(verb, err);
    }
  };

  return {
    async revoke(taskId, options = {}) {
      const bad = checkName('task id', taskId);
      if (bad) return refused(bad);
      const signal = options.signal ?? 'SIGTERM';
      if (!SIGNALS.has(signal.toUpperCase())) return refused(`unknown signal ${JSON.stringify(signal.slice(0, 20))}: use SIGTERM, SIGKILL, SIGINT, SIGQUIT, SIGHUP, SIGUSR1 or SIGUSR2`);
      try {
        const replies = replyList(await control().revoke(taskId, { terminate: options.terminate === true, signal: signal.toUpperCase(), reply: true, timeoutMs }));
        // Revoke is broadcast: every worker remembers the id, so no reply is not a failure (none may be running).
        const r = summary(`revoke${options.terminate ? ' (terminate)' : ''} sent for ${taskId}`, replies);
        return { ...r, ok: replies.every((x) => x.ok) };
      } catch (err) {
        return failed('revoke', err);
      }
    },

    async retry(taskId) {
      const bad = checkName('task id', taskId);
      if (bad) return refused(bad);
      try {
        const b = await broker();
        if (!b.redriveDeadLetters) return refused(`the ${b.kind} broker cannot send dead letters again, and task events do not carry the message: ${taskId} cannot be retried from the dashboard`);
        const known = ctx.queueOf(taskId);
        const queues = [...new Set([...(known ? [known] : []), ...(await ctx.queues())])];
        for (const queue of queues) {
          const letters = await b.deadLetters(queue, 10_000);
          if (!letters.some((d) => deadLetterId(d) === taskId)) continue;
          const r = await b.redriveDeadLetters(queue, { ids: [taskId] });
          ctx.changed();
          if (r.moved.length > 0) return { ok: true, message: `${taskId} sent again to ${queue} with its original message (from the dead-letter queue ${queue}.dlq)` };
          return refused(`${taskId} is in ${queue}.dlq but could not be sent again: ${r.refused.map((x) => x.reason).join('; ') || 'unknown reason'}`);
        }
        return refused(
          `${taskId} cannot be retried: its original message is not in the dead-letter queue of ${queues.length ? queues.join(', ') : 'any known queue'}, and task events carry only a shortened repr of its arguments, not the message. Send the task again from its client (or from Celery: app.send_task).`,
        );
      } catch (err) {
        return failed('retry', err);
      }
    },

    async rateLimit(taskName, rate, worker) {
      const bad = checkName('task name', taskName) ?? (worker !== undefined ? checkName('worker', worker) : undefined);
      if (bad) return refused(bad);
      if (typeof rate !== 'string' || !RATE_RE.test(rate)) return refused(`invalid rate ${JSON.stringify(String(rate).slice(0, 20))}: use e.g. 10/m, 5/s, 100/h, or 0 for no limit`);
      try {
        const replies = replyList(await control().rateLimit(taskName, rate, { reply: true, timeoutMs, ...(worker ? { destination: [worker] } : {}) }));
        return summary(`rate limit of ${taskName} set to ${rate}${worker ? ` on ${worker}` : ''}`, replies, worker ? 1 : undefined);
      } catch (err) {
        return failed('rate limit', err);
      }
    },

    async redriveDeadLetters(queue, ids) {
      const bad = checkName('queue', queue) ?? ids?.map((id) => checkName('task id', id)).find(Boolean);
      if (bad) return refused(bad);
      try {
        const b = await broker();
        if (!b.redriveDeadLetters) return refused(`the ${b.kind} broker cannot redrive dead letters`);
        const r = await b.redriveDeadLetters(queue, ids ? { ids } : {});
        ctx.changed();
        const refusedPart = r.refused.length ? `; ${r.refused.length} refused (${r.refused.slice(0, 5).map((x) => `${x.id ?? '(no id)'}: ${x.reason}`).join('; ')})` : '';
        return { ok: r.refused.length === 0, message: `${r.moved.length} dead ${r.moved.length === 1 ? 'letter' : 'letters'} of ${queue} sent again${refusedPart}` };
      } catch (err) {
        return failed('redrive', err);
      }
    },

    async dropDeadLetters(queue, ids) {
      const bad = checkName('queue', queue) ?? ids?.map((id) => checkName('task id', id)).find(Boolean);
      if (bad) return refused(bad);
      try {
        const b = await broker();
        if (!b.dropDeadLetters) return refused(`the ${b.kind} broker cannot drop dead letters`);
        const n = await b.dropDeadLetters(queue, ids ? { ids } : {});
        ctx.changed();
        return { ok: true, message: `${n} dead ${n === 1 ? 'letter' : 'letters'} of ${queue} dropped` };
      } catch (err) {
        return failed('drop', err);
      }
    },

    async pauseQueue(queue) {
      const bad = checkName('queue', queue);
      if (bad) return refused(bad);
      try {
        const workers = await ctx.consumersOf(queue);
        if (workers.length === 0) return refused(`no worker consumes ${queue}: nothing to pause`);
        const replies = replyList(await control().cancelConsumer(queue, { reply: true, destination: workers, timeoutMs }));
        const stopped = replies.filter((r) => r.ok).map((r) => r.worker);
        // Remember every worker we stopped (and those already paused), so resume restarts exactly them.
        if (stopped.length) ctx.paused.set(queue, [...new Set([...(ctx.paused.get(queue) ?? []), ...stopped])].sort());
        ctx.changed();
        return summary(`${queue} paused on ${stopped.length} of ${workers.length} ${workers.length === 1 ? 'worker' : 'workers'}`, replies, workers.length);
      } catch (err) {
        return failed('pause', err);
      }
    },

    async resumeQueue(queue) {
      const bad = checkName('queue', queue);
      if (bad) return refused(bad);
      const workers = ctx.paused.get(queue);
      if (!workers?.length) return refused(`${queue} is not paused from this dashboard`);
      try {
        const replies = replyList(await control().addConsumer(queue, { reply: true, destination: workers, timeoutMs }));
        const resumed = new Set(replies.filter((r) => r.ok).map((r) => r.worker));
        const left = workers.filter((w) => !resumed.has(w));
        // A worker that did not answer stays on the list, so a second resume tries it again.
        if (left.length) ctx.paused.set(queue, left);
        else ctx.paused.delete(queue);
        ctx.changed();
        return summary(`${queue} resumed on ${resumed.size} of ${workers.length} ${workers.length === 1 ? 'worker' : 'workers'}`, replies, workers.length);
      } catch (err) {
        return failed('resume', err);
      }
    },

    async shutdown(worker) {
      const bad = checkName('worker', worker);
      if (bad) return refused(bad);
      try {
        // Celery's shutdown sends no reply: the worker's offline event (or silence) is the answer.
        await control().shutdown({ destination: [worker] });
        ctx.changed();
        return { ok: true, message: `shutdown sent to ${worker} (workers do not reply to shutdown; watch it go offline)` };
      } catch (err) {
        return failed('shutdown', err);
      }
    },

    poolGrow: (worker, n) => (checkN(n) ? Promise.resolve(refused(checkN(n)!)) : toWorker(`pool of ${worker} grown by ${n}`, worker, (o) => control().poolGrow(n, o))),
    poolShrink: (worker, n) => (checkN(n) ? Promise.resolve(refused(checkN(n)!)) : toWorker(`pool of ${worker} shrunk by ${n}`, worker, (o) => control().poolShrink(n, o))),
    addConsumer: (worker, queue) => (checkName('queue', queue) ? Promise.resolve(refused(checkName('queue', queue)!)) : toWorker(`${worker} asked to consume ${queue}`, worker, (o) => control().addConsumer(queue, o))),
    cancelConsumer: (worker, queue) =>
      checkName('queue', queue) ? Promise.resolve(refused(checkName('queue', queue)!)) : toWorker(`${worker} asked to stop consuming ${queue}`, worker, (o) => control().cancelConsumer(queue, o)),
  };
}
