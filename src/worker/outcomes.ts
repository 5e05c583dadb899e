/**
 * What happens after a task ends (or is ended without running): the result
 * record (SUCCESS, FAILURE, RETRY, REVOKED), the follow-ups (retry, chain
 * step, callbacks, errbacks, sent through the app's Producer like any
 * `delay()`), the counters and the logs; then the message is settled
 * (settle.ts). Exception records come from exception-records.ts.
 *
 * A follow-up the submission limits refuse (its queue is full, a send rate
 * limit is spent) fails like a `delay()` would: the task ends as FAILURE
 * with that error, as in Celery, where `retry()` and callbacks raise what
 * the publish raised. (Giving the message back would run the task again at
 * once, and again, while the queue stays full.) A refused errback is
 * logged: the FAILURE it follows is already stored.
 */
import { ResultEncodeError } from '../client/results.ts';
import { ConfigError, QueueFullError, RateLimitedError, ValidationError } from '../errors.ts';
import type { StoredRecord } from '../core/backend.ts';
import { redactAll } from '../config/redact.ts';
import { buildResultMeta, errorToExceptionInfo, type ExceptionInfo, type ExtendedFields, type ResultMeta } from '../protocol/result-meta.ts';
import type { TaskRequest } from '../protocol/task-message.ts';
import type { ExecOutcome } from './execute.ts';
import { encodeError, expiredRevoked, maxRetriesExceeded, redactException, retryInFuture, timeLimitExceeded, workerLost } from './exception-records.ts';
import { childTuple, retryMessageInput } from './follow-ups.ts';
import { afterFailureStored, afterRevokedStored, afterSuccessStored, hasCanvasWork, sendSuccessCanvas } from './canvas/outcomes.ts';
import { sendReplacement } from './canvas/replace.ts';
import { decideRetry } from './retry-policy.ts';
import { ackOnce, afterSettling, giveBack, settleInBatch, storeMeta } from './settle.ts';
import { reportFinished, type Job, type WorkerState } from './state.ts';

/**
 * Run the settling work of a job, tracked so shutdown can wait for it. A
 * result that cannot be encoded ends as FAILURE EncodeError; any other
 * failure gives the message back (counted against its redelivery limit).
 */
export function finalize(w: WorkerState, job: Job, work: () => Promise<void>): void {
  w.finalizing++;
  work()
    .catch(async (err: unknown) => {
      if (err instanceof ResultEncodeError && !job.acked) {
        try {
          return await onEncodeError(w, job, err);
        } catch (e) {
          err = e;
        }
      }
      w.logger.error({ err, id: job.req.id, task: job.req.task }, 'could not settle task; requeueing the message (counted against its redelivery limit)');
      if (!job.acked) await giveBack(w, job, 'settle').catch(() => undefined);
    })
    .finally(() => {
      w.finalizing--;
      reportFinished(w, job);
      afterSettling(w);
    });
}

/** Settle a job by its outcome. */
export function onOutcome(w: WorkerState, job: Job, outcome: ExecOutcome): Promise<void> {
  switch (outcome.kind) {
    case 'success':
      return onSuccess(w, job, outcome.value, outcome.runtimeMs);
    case 'failure':
      return onFailure(w, job, outcome);
    case 'retry':
      return onRetry(w, job, outcome);
    case 'timeout':
      return onFailure(w, job, { kind: 'failure', exc: timeLimitExceeded(outcome.limitSeconds), traceback: null, runtimeMs: outcome.runtimeMs });
    case 'lost':
      return onLost(w, job, outcome.reason);
    case 'replaced':
      return onReplaced(w, job, outcome);
  }
}

/** Callbacks or a chain to send after success (they must go out before the result is stored). */
export function hasSuccessFollowUps(req: TaskRequest): boolean {
  return hasCanvasWork(req);
}

/**
 * A success with nothing to send after it (the common case): its result
 * joins this turn's store batch, and its ack the ack batch after that.
 */
export function succeeded(w: WorkerState, job: Job, value: unknown, runtimeMs: number): void {
  const { req } = job;
  if (w.logTasks) w.logger.info({ task: req.task, id: req.id, runtimeMs }, 'task succeeded');
  if (ignoresResult(w, job) || !w.store) {
    w.counters.succeeded++;
    finalize(w, job, () => ackOnce(w, job));
    return;
  }
  let record: StoredRecord;
  try {
    record = w.store.encode(successMeta(w, job, value, []), req);
  } catch (err) {
    // A result the serializer cannot encode: the task ends as FAILURE EncodeError (Celery's rule), never requeued.
    finalize(w, job, () => onEncodeError(w, job, err));
    return;
  }
  w.counters.succeeded++;
  settleInBatch(w, job, record);
}

/** Revoke the task if it expired. Returns true when it did. */
export function expired(w: WorkerState, job: Job): boolean {
  const { req } = job;
  if (req.expires === null || req.expires > Date.now()) return false;
  w.counters.revoked++;
  if (w.events?.taskEvents) w.events.revoked(req, { expired: true });
  w.logger.info({ id: req.id, task: req.task }, `task ${req.task}[${req.id}] expired; revoked`);
  const meta = buildResultMeta({ taskId: req.id, status: 'REVOKED', result: expiredRevoked(), traceback: null, groupId: req.group, parentId: req.parentId });
  finalize(w, job, async () => {
    if (!req.ignoreResult) await storeMeta(w, meta, req);
    await afterRevokedStored(w, req, meta.result);
    await ackOnce(w, job);
  });
  return true;
}

/** The result cannot be encoded: FAILURE EncodeError (as Celery records it), then ack. */
function onEncodeError(w: WorkerState, job: Job, err: unknown): Promise<void> {
  if (!(err instanceof ResultEncodeError)) return Promise.reject(err);
  return onFailure(w, job, { kind: 'failure', exc: encodeError(err.reason), traceback: null, runtimeMs: 0 });
}

/** Celery's `result_extended` fields of a job, when `resultExtended` is on. */
export function extended(w: WorkerState, job: Job): ExtendedFields | undefined {
  if (!w.rt.settings.resultExtended) return undefined;
  const { req, delivery } = job;
  return { name: req.task, args: req.args, kwargs: req.kwargs, worker: w.nodeName, retries: req.retries, queue: delivery.queue };
}

/** The message, the task or the settings say not to store its result. */
function ignoresResult(w: WorkerState, job: Job): boolean {
  return job.req.ignoreResult || (job.def.options.ignoreResult ?? false) || w.rt.settings.taskIgnoreResult;
}

function successMeta(w: WorkerState, job: Job, value: unknown, children: ReturnType<typeof childTuple>[]): ResultMeta {
  const { req } = job;
  return buildResultMeta({ taskId: req.id, status: 'SUCCESS', result: value === undefined ? null : value, children, groupId: req.group, parentId: req.parentId, extended: extended(w, job) });
}

async function onSuccess(w: WorkerState, job: Job, value: unknown, runtimeMs: number): Promise<void> {
  const { req } = job;
  // Callbacks and the chain's next step go out before the result is stored, so `children` names them.
  let children: string[] = [];
  if (hasSuccessFollowUps(req)) {
    try {
      children = await sendSuccessCanvas(w, req, value);
    } catch (err) {
      if (!refused(err)) throw err;
      return onFailure(w, job, { kind: 'failure', exc: errorToExceptionInfo(err), traceback: null, runtimeMs });
    }
  }
  if (!ignoresResult(w, job)) await storeMeta(w, successMeta(w, job, value, children.map(childTuple)), req);
  await afterSuccessStored(w, req, value);
  // Counted once the outcome is stored: a result that cannot be encoded ends as a failure instead.
  w.counters.succeeded++;
  if (w.logTasks) w.logger.info({ task: req.task, id: req.id, runtimeMs }, 'task succeeded');
  await ackOnce(w, job);
}

/** Store FAILURE (unless results are ignored), send the errbacks, ack. */
export async function onFailure(w: WorkerState, job: Job, outcome: Extract<ExecOutcome, { kind: 'failure' }>): Promise<void> {
  const { req } = job;
  w.logger.error(
    { id: req.id, task: req.task, exc_type: outcome.exc.exc_type, runtimeMs: outcome.runtimeMs },
    `task ${req.task}[${req.id}] raised ${outcome.exc.exc_type}: ${String(outcome.exc.exc_message[0] ?? '')}`,
  );
  if (w.events?.taskEvents) w.events.failed(req, outcome.exc, outcome.traceback);
  const ignored = ignoresResult(w, job);
  if (!ignored || w.rt.settings.taskStoreErrorsEvenIfIgnored) {
    await storeMeta(
      w,
      buildResultMeta({
        taskId: req.id,
        status: 'FAILURE',
        result: redactException(outcome.exc),
        traceback: outcome.traceback === null ? null : redactAll(outcome.traceback),
        groupId: req.group,
        parentId: req.parentId,
        extended: extended(w, job),
      }),
      req,
    );
  }
  // Counted once its record is stored (a settle that fails and is retried is counted once).
  w.counters.failed++;
  try {
    await afterFailureStored(w, req, outcome.exc, outcome.traceback === null ? null : redactAll(outcome.traceback));
  } catch (err) {
    if (!refused(err)) throw err;
    w.logger.error({ err, id: req.id, task: req.task }, `task ${req.task}[${req.id}]: an errback was not sent: ${(err as Error).message}`);
  }
  await ackOnce(w, job);
}

async function onRetry(w: WorkerState, job: Job, outcome: Extract<ExecOutcome, { kind: 'retry' }>): Promise<void> {
  const { req, def } = job;
  const decision = decideRetry(def.options, w.rt.settings, req.retries, outcome.options, Date.now());
  if (!decision.retry) {
    const exc: ExceptionInfo = outcome.options.exc ?? maxRetriesExceeded(req);
    return onFailure(w, job, { kind: 'failure', exc, traceback: outcome.options.traceback, runtimeMs: outcome.runtimeMs });
  }
  // Before the new message goes out: a worker may run it before the publish returns (its events would come first).
  if (w.events?.taskEvents) w.events.retried(req, outcome.options.exc, outcome.options.traceback);
  // Back to the queue it came from (as Celery does), through the Producer: the queue's cap, signing and send limits apply.
  try {
    await w.rt.producer.sendFollowUp({ queue: job.delivery.queue, input: retryMessageInput(req, decision.eta) });
  } catch (err) {
    if (!refused(err)) throw err;
    return onFailure(w, job, { kind: 'failure', exc: errorToExceptionInfo(err), traceback: null, runtimeMs: outcome.runtimeMs });
  }
  w.counters.retried++;
  w.logger.info({ id: req.id, task: req.task, retries: req.retries + 1, eta: new Date(decision.eta).toISOString() }, `task ${req.task}[${req.id}] retry scheduled`);
  await storeMeta(
    w,
    buildResultMeta({
      taskId: req.id,
      status: 'RETRY',
      result: outcome.options.exc ? redactException(outcome.options.exc) : retryInFuture(),
      traceback: outcome.options.traceback === null ? null : redactAll(outcome.options.traceback),
      children: [childTuple(req.id)],
      groupId: req.group,
      parentId: req.parentId,
    }),
    req,
  );
  await ackOnce(w, job);
}

/**
 * The task called `replace()`: send the replacement, then ack, storing
 * nothing and sending no event (Celery's `Ignore`; the replacement's final
 * task stores the result under this task's id). A replacement that cannot
 * be sent (refused by the submission limits, or a chord where the backend
 * has no join) fails the task with that error, as `sig.delay()` raising
 * inside Celery's `replace` does.
 */
async function onReplaced(w: WorkerState, job: Job, outcome: Extract<ExecOutcome, { kind: 'replaced' }>): Promise<void> {
  const { req } = job;
  let id: string;
  try {
    id = await sendReplacement(w, req, outcome.replacement, job.delivery.queue);
  } catch (err) {
    if (!refused(err) && !(err instanceof ConfigError)) throw err;
    return onFailure(w, job, { kind: 'failure', exc: errorToExceptionInfo(err), traceback: err instanceof Error ? (err.stack ?? null) : null, runtimeMs: outcome.runtimeMs });
  }
  if (w.logTasks) w.logger.info({ task: req.task, id: req.id, replacement: outcome.replacement.task, replacementId: id, runtimeMs: outcome.runtimeMs }, `task ${req.task}[${req.id}] replaced by ${outcome.replacement.task}`);
  await ackOnce(w, job);
}

/** The process running the task died or the shutdown deadline passed: requeue (late ack) or FAILURE WorkerLostError. */
export async function onLost(w: WorkerState, job: Job, reason: string): Promise<void> {
  const { req, def } = job;
  if (job.acksLate && (w.stopping || (def.options.rejectOnWorkerLost ?? w.rt.settings.taskRejectOnWorkerLost))) {
    w.logger.warn({ id: req.id, task: req.task, reason }, `task ${req.task}[${req.id}] ${reason}; message requeued`);
    if (w.events?.taskEvents) w.events.rejected(req, true);
    await giveBack(w, job);
    return;
  }
  return onFailure(w, job, { kind: 'failure', exc: workerLost(reason), traceback: null, runtimeMs: 0 });
}

/** The submission limits refused a follow-up (see the module comment). */
function refused(err: unknown): boolean {
  // ValidationError: a canvas follow-up that cannot be built (a malformed or unsupported signature): FAILURE, as in Celery.
  return err instanceof QueueFullError || err instanceof RateLimitedError || err instanceof ValidationError;
}
