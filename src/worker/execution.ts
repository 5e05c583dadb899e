/**
 * Running jobs: the last checks before a task runs (stale delivery, expiry,
 * earlier lost runs, arguments), the early ack and the supervisor's
 * 'started' events, handing the job to the pool, and taking its outcome.
 */
import { bindArguments, validateArguments } from '../client/task.ts';
import { ValidationError } from '../errors.ts';
import { buildResultMeta, errorToExceptionInfo, type ExceptionInfo } from '../protocol/result-meta.ts';
import type { ExecOutcome } from './execute.ts';
import { argumentTypeError, redeliveryLimitExceeded, timeLimitExceeded, workerLost } from './exception-records.ts';
import { lossKey, lossReason, lostRuns } from './loss-ledger.ts';
import { expired, extended, finalize, hasSuccessFollowUps, onFailure, onOutcome, succeeded } from './outcomes.ts';
import { afterProgress, progressWriter } from './progress.ts';
import { ackOnce, finalizeLoss, giveBack, storeMeta } from './settle.ts';
import { Execution, reportFinished, type Job, type WorkerState } from './state.ts';
import type { TaskEvent } from './types.ts';
import { revokedJob } from './control/worker-host.ts';
import { canvasOfStarted } from './canvas/lost.ts';
import { addToChord } from './canvas/replace.ts';
import { runTraced } from './tracing.ts';
import { judgeDeliveryCount } from './delivery-count.ts';

/** Check expiry and arguments and build the execution; false when the job was settled instead. */
export function prepare(w: WorkerState, job: Job): boolean {
  const { req, def } = job;
  if (job.delivery.stale) {
    dropStale(w, job);
    return false;
  }
  if (expired(w, job)) return false;
  if (w.revoked.size > 0 && revokedJob(w, job)) return false;
  if (w.ledger.size > 0 && job.delivery.redelivered && !judgeLosses(w, job)) return false;
  if (job.delivery.deliveryCount !== undefined && !judgeDeliveryCount(w, job)) return false;
  let args: unknown[];
  let kwargs: Record<string, unknown>;
  try {
    ({ args, kwargs } = validateArguments(def, req.args, req.kwargs));
    args = bindArguments(def, args, kwargs);
  } catch (err) {
    const exc: ExceptionInfo = err instanceof ValidationError && !def.options.schema ? argumentTypeError(err.message) : errorToExceptionInfo(err);
    // Received and ended (as a failure) without running: counted as processed, so the counters add up.
    w.counters.processed++;
    finalize(w, job, () => onFailure(w, job, { kind: 'failure', exc, traceback: null, runtimeMs: 0 }));
    return false;
  }
  const [hard, soft] = limits(w, job);
  job.hardMs = hard !== undefined ? hard * 1000 : undefined;
  job.exec = new Execution(String(++w.jobSeq), def.name, args, soft !== undefined ? soft * 1000 : undefined, w.nodeName, job, kwargs);
  job.exec.updateState = progressWriter(w, job);
  if (w.store) job.exec.addToChord = (d, lazy) => addToChord(w, req, d, lazy);
  return true;
}

/** [hard, soft] seconds: message header, then task options, then worker settings. */
function limits(w: WorkerState, job: Job): [number | undefined, number | undefined] {
  const [h, s] = job.req.timeLimit;
  const o = job.def.options;
  return [h ?? o.timeLimit ?? w.rt.settings.taskTimeLimit, s ?? o.softTimeLimit ?? w.rt.settings.taskSoftTimeLimit];
}

/**
 * A redelivered message whose earlier runs were lost (loss-ledger.ts):
 * past the limit it is dead-lettered with one FAILURE record; one whose
 * FAILURE is already stored is dead-lettered without running; a suspect
 * runs alone. Returns false when the job was settled instead of run.
 */
function judgeLosses(w: WorkerState, job: Job): boolean {
  const { req, def } = job;
  const entry = w.ledger.get(req.id);
  if (!entry) return true;
  const reason = lossReason(entry);
  if (entry.final) {
    w.counters.rejected++;
    if (w.events?.taskEvents) w.events.rejected(req, false);
    w.logger.warn({ id: req.id, task: req.task }, `task ${req.task}[${req.id}] came back after its FAILURE was stored (${reason}); message dead-lettered`);
    w.rt.security.released?.(job.delivery.message);
    job.acked = true;
    // If the dead-letter queue cannot take it, it goes back (and comes here again): never held for ever.
    void job.delivery.deadLetter(reason).catch((err: unknown) => {
      w.logger.error({ err, id: req.id }, 'dead-lettering failed; the message goes back');
      return job.delivery.reject(true).catch(() => undefined);
    });
    return false;
  }
  if (lostRuns(entry) > (def.options.maxRedeliveries ?? w.rt.settings.taskMaxRedeliveries)) {
    w.counters.rejected++;
    finalizeLoss(w, req.id);
    w.logger.error({ id: req.id, task: req.task }, `task ${req.task}[${req.id}] ${reason}; message dead-lettered`);
    const exc: ExceptionInfo =
      entry.timeLimits > 0 && reason.startsWith('hard')
        ? timeLimitExceeded(reason)
        : entry.settles > entry.crashes
          ? redeliveryLimitExceeded(reason)
          : workerLost(`the task ${reason}; message dead-lettered`);
    // A failure here gives the message back (finalize), to be judged again.
    finalize(w, job, async () => {
      await storeMeta(w, buildResultMeta({ taskId: req.id, status: 'FAILURE', result: exc, traceback: null, groupId: req.group, parentId: req.parentId }), req);
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
export function launch(w: WorkerState, batch: Job[]): void {
  if (w.onTaskEvents) {
    const events: TaskEvent[] = [];
    const rpc = typeof w.store?.backend.replyRoute === 'function';
    for (const job of batch) {
      job.reported = true;
      const { req } = job;
      events.push({ type: 'started', id: req.id, task: req.task, tag: job.delivery.deliveryTag, lateAck: job.acksLate, hardLimitMs: job.hardMs, group: req.group, parentId: req.parentId, ...(rpc && req.replyTo ? { replyTo: req.replyTo, correlationId: req.correlationId } : {}), ...canvasOfStarted(req) });
    }
    w.onTaskEvents(events);
  }
  for (const job of batch) {
    if (job.acksLate) run(w, job);
    else
      ackOnce(w, job).then(
        () => run(w, job),
        (err: unknown) => notRun(w, job, err),
      );
  }
}

/** The early ack failed: the task does not run and its message goes back. */
function notRun(w: WorkerState, job: Job, err: unknown): void {
  const { req } = job;
  if (job.isolate) w.isolating = false;
  w.logger.error({ err, id: req.id }, 'could not ack before running; the message is given back');
  reportFinished(w, job);
  giveBack(w, job).then(
    () => freeSlot(w),
    () => freeSlot(w),
  );
}

function freeSlot(w: WorkerState): void {
  w.active--;
  w.drain();
}

/**
 * The broker has taken this message back (its channel closed, its lease
 * ran out) and redelivers it: running it here too would run it twice.
 */
function dropStale(w: WorkerState, job: Job): void {
  w.logger.warn({ id: job.req.id, task: job.req.task }, `task ${job.req.task}[${job.req.id}] not started: the broker took its message back (connection lost, or its lease ran out) and delivers it again`);
  reportFinished(w, job);
  // Give it back if nobody has yet (a no-op where the broker already did: AMQP, or a Redis entry already restored).
  void giveBack(w, job).catch(() => undefined);
}

function run(w: WorkerState, job: Job): void {
  const { req, def } = job;
  // Checked again at the last moment: an early ack on a closed channel "succeeds" without reaching the broker.
  if (job.delivery.stale) {
    if (job.isolate) w.isolating = false;
    dropStale(w, job);
    freeSlot(w);
    return;
  }
  if (w.events?.taskEvents) w.events.started(req);
  if ((def.options.trackStarted ?? w.rt.settings.taskTrackStarted) && !def.options.ignoreResult) {
    void storeMeta(w, buildResultMeta({ taskId: req.id, status: 'STARTED', result: { pid: process.pid, hostname: w.nodeName }, groupId: req.group, parentId: req.parentId, extended: extended(w, job) }), req).catch(
      (err: unknown) => w.logger.warn({ err, id: req.id }, 'could not store STARTED'),
    );
  }
  w.running.set(job, Date.now());
  if (w.rt.tracing) return runTraced(w.rt.tracing, job, w.nodeName, () => afterProgress(job, w.pool.run(job.exec!, job.hardMs)), (o) => ran(w, job, o));
  const outcome = afterProgress(job, w.pool.run(job.exec!, job.hardMs));
  if (outcome instanceof Promise) outcome.then((o) => ran(w, job, o));
  else ran(w, job, outcome);
}

function ran(w: WorkerState, job: Job, outcome: ExecOutcome): void {
  w.running.delete(job);
  if (job.lost) return;
  const name = job.def.name;
  if (job.isolate) w.isolating = false;
  // It ran to an end: its lost runs are history (here and in the shared ledger).
  if (w.ledger.size > 0 && outcome.kind !== 'lost' && w.ledger.forget(job.req.id)) void w.store?.backend.forget(lossKey(job.req.id)).catch(() => undefined);
  w.counters.processed++;
  w.byTask[name] = (w.byTask[name] ?? 0) + 1;
  // Revoked with terminate while it ran: REVOKED 'terminated', as Celery records it.
  if (outcome.kind !== 'success' && w.revoked.size > 0 && revokedJob(w, job, 'terminated')) return freeSlot(w);
  if (outcome.kind === 'success' && w.events?.taskEvents) w.events.succeeded(job.req, outcome.value, outcome.runtimeMs);
  if (outcome.kind === 'success' && !hasSuccessFollowUps(job.req)) succeeded(w, job, outcome.value, outcome.runtimeMs);
  else finalize(w, job, () => onOutcome(w, job, outcome));
  freeSlot(w);
}
