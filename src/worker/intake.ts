/**
 * Intake: each delivery is decoded, checked (accept list, signature,
 * replay admission) and matched to a registered task, or refused
 * (dead-lettered, with a log line naming its id and reason). An accepted
 * job is revoked if expired, held until its ETA, or scheduled.
 */
import type { Delivery, MalformedDelivery } from '../core/broker.ts';
import { ContentDisallowedError, DecodeError } from '../errors.ts';
import { recordSecurityEvent } from '../observability/security-events.ts';
import { buildResultMeta } from '../protocol/result-meta.ts';
import { parseTaskMessage, peekTaskHeaders, type TaskRequest } from '../protocol/task-message.ts';
import { notRegistered } from './exception-records.ts';
import { pullShared } from './loss-ledger.ts';
import { expired } from './outcomes.ts';
import { admit, hold } from './scheduling.ts';
import { storeMeta } from './settle.ts';
import { recordDeadLettered } from './dead-letter-failure.ts';
import type { Job, WorkerState } from './state.ts';
import { revokedJob } from './control/worker-host.ts';
import { canvasBuiltin } from './canvas/builtins.ts';
import type { ReceiveSpan } from '../observability/tracing/index.ts';

/** How long a prefork child holds a redelivered message before judging it (its supervisor's ledger update may be on its way). */
const REDELIVERY_SETTLE_MS = 250;

/** A message the broker could not even parse was dead-lettered by it: count and report it. */
export function onMalformed(w: WorkerState, m: MalformedDelivery): void {
  w.counters.rejected++;
  w.logger.error({ id: m.id, queue: m.queue, reason: m.reason }, `malformed message dead-lettered: ${m.reason}`);
  recordSecurityEvent('malformed_message', { messageId: m.id, queue: m.queue, reason: m.reason }, w.logger);
}

export function onDelivery(w: WorkerState, delivery: Delivery): void {
  if (w.stopping) {
    void delivery.reject(true).catch((err: unknown) => w.logger.error({ err }, 'requeue failed'));
    return;
  }
  const span = w.rt.tracing ? receiveSpan(w, delivery) : undefined;
  let req: TaskRequest;
  try {
    req = parseTaskMessage(delivery.message, (w.decodeBody ??= w.rt.decodeBody));
  } catch (err) {
    refuse(w, delivery, err, span);
    return;
  }
  const admitMessage = w.rt.security.admit;
  if (!admitMessage) {
    accept(w, delivery, req, span);
    return;
  }
  admitMessage(delivery.message, req, delivery).then(
    (reason) => (reason === undefined ? accept(w, delivery, req, span) : refuse(w, delivery, new DecodeError(reason, { code: 'ERR_REFUSED' }), span)),
    (err: unknown) => {
      // The check itself failed (e.g. its store is down): give the message back rather than guess.
      w.logger.error({ err, id: req.id }, 'message admission check failed; requeueing');
      span?.end('REQUEUED', `admission check failed: ${err instanceof Error ? err.message : String(err)}`);
      void delivery.reject(true).catch(() => undefined);
    },
  );
}

/** The receive span of a delivery, parented by the message's trace context (read from the raw headers: no decode needed). */
function receiveSpan(w: WorkerState, delivery: Delivery): ReceiveSpan {
  const { id, task } = peekTaskHeaders(delivery.message);
  return w.rt.tracing!.receive({ task, id, headers: delivery.message.headers, hostname: w.nodeName, queue: delivery.queue, redelivered: delivery.redelivered });
}

function accept(w: WorkerState, delivery: Delivery, req: TaskRequest, span: ReceiveSpan | undefined): void {
  const def = w.rt.registry.get(req.task) ?? canvasBuiltin(req.task, w.rt.registry);
  if (!def?.fn) {
    span?.end('REJECTED', `unregistered task ${req.task}`);
    unknownTask(w, delivery, req);
    return;
  }
  const acksLate = def.options.acksLate ?? w.rt.settings.taskAcksLate;
  const job: Job = { delivery, req, def, acksLate, acked: false, reported: false, exec: undefined, hardMs: undefined };
  if (w.logTasks) w.logger.info({ task: req.task, id: req.id }, 'task received');
  if (expired(w, job)) {
    span?.end('REVOKED', 'expired');
    return;
  }
  if (w.events?.taskEvents) w.events.received(req);
  if (w.revoked.size > 0 && revokedJob(w, job)) {
    span?.end('REVOKED', 'revoked');
    return;
  }
  span?.end('RECEIVED', undefined, req.eta);
  if (req.eta !== null && req.eta > Date.now()) {
    hold(w, job, req.eta, true);
    return;
  }
  // A redelivered message may be a task whose runs were lost elsewhere: read the shared ledger first. In a
  // prefork child it may also be the task that just killed a sibling process (RabbitMQ gives it back as soon
  // as that process's connection drops, maybe before the supervisor's ledger update arrives): wait a moment.
  if (delivery.redelivered && !w.ledger.get(req.id) && (w.onTaskEvents || w.store)) {
    if (w.store) void pullShared(w.ledger, w.store.backend, [req.id]).catch(() => undefined);
    hold(w, job, Date.now() + REDELIVERY_SETTLE_MS, false);
    return;
  }
  admit(w, job);
}

/** Dead-letter a message that cannot be run, log it with its id and reason. */
function refuse(w: WorkerState, delivery: Delivery, err: unknown, span?: ReceiveSpan): void {
  const { id, task } = peekTaskHeaders(delivery.message);
  const reason =
    err instanceof ContentDisallowedError
      ? `content type ${JSON.stringify(err.contentType)} not accepted`
      : err instanceof DecodeError
        ? err.reason
        : err instanceof Error
          ? err.message
          : String(err);
  w.counters.rejected++;
  span?.end('REJECTED', reason);
  w.logger.error({ id, task, queue: delivery.queue, reason, code: (err as { code?: string }).code }, `rejected message ${id ?? '(no id)'}: ${reason}`);
  delivery.deadLetter(reason).then(
    () => recordDeadLettered(w, delivery.message, err, reason),
    (e: unknown) => w.logger.error({ err: e, id }, 'dead-lettering failed'),
  );
}

function unknownTask(w: WorkerState, delivery: Delivery, req: TaskRequest): void {
  w.counters.rejected++;
  if (w.events?.taskEvents) w.events.notRegistered(req);
  w.logger.error({ id: req.id, task: req.task, queue: delivery.queue }, `received unregistered task ${JSON.stringify(req.task)}; message dead-lettered`);
  const meta = buildResultMeta({ taskId: req.id, status: 'FAILURE', result: notRegistered(req.task), traceback: null, groupId: req.group, parentId: req.parentId });
  void storeMeta(w, meta, req)
    .then(() => delivery.deadLetter(`unregistered task ${req.task}`))
    .catch((err: unknown) => w.logger.error({ err, id: req.id }, 'could not dead-letter unregistered task'));
}
