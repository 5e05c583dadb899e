/**
 * The broker's own count of redeliveries as a bound (issue 21): RabbitMQ
 * quorum queues stamp `x-delivery-count` on a message they deliver again
 * (`Delivery.deliveryCount`). The loss ledger (loss-ledger.ts) counts lost
 * runs where it can see them — in one supervisor's memory, and across
 * nodes only through the result backend — so a poison message that kills
 * supervisors, moves between nodes without a backend, or outlives a
 * restart would loop for ever on the ledger alone. The broker's count
 * survives all of that: past `taskMaxDeliveryCount` the message is
 * dead-lettered with the reason and one FAILURE record instead of running.
 *
 * The broker counts every return, innocent ones too (a prefetched message
 * given back at shutdown, a connection lost under it), which is why this
 * limit is separate from, and larger than, `taskMaxRedeliveries`.
 */
import { buildResultMeta } from '../protocol/result-meta.ts';
import { redeliveryLimitExceeded } from './exception-records.ts';
import { finalize } from './outcomes.ts';
import { finalizeLoss, storeMeta } from './settle.ts';
import type { Job, WorkerState } from './state.ts';

/** The reason a message is dead-lettered for its delivery count (also the FAILURE's message). */
export function deliveryCountReason(count: number): string {
  return `was redelivered ${count} time${count === 1 ? '' : 's'} by the broker without completing (x-delivery-count)`;
}

/**
 * Check a delivery against `taskMaxDeliveryCount`. Returns false when the
 * job was settled (FAILURE stored, message dead-lettered) instead of run.
 */
export function judgeDeliveryCount(w: WorkerState, job: Job): boolean {
  const count = job.delivery.deliveryCount;
  const limit = w.rt.settings.taskMaxDeliveryCount;
  if (count === undefined || limit <= 0 || count <= limit) return true;
  const { req } = job;
  const reason = deliveryCountReason(count);
  w.counters.rejected++;
  // Copies still in flight (another node, a requeue) are dead-lettered without running too.
  finalizeLoss(w, req.id);
  w.logger.error({ id: req.id, task: req.task, deliveryCount: count, limit }, `task ${req.task}[${req.id}] ${reason}, past taskMaxDeliveryCount ${limit}; message dead-lettered`);
  finalize(w, job, async () => {
    await storeMeta(w, buildResultMeta({ taskId: req.id, status: 'FAILURE', result: redeliveryLimitExceeded(reason), traceback: null, groupId: req.group, parentId: req.parentId }));
    await job.delivery.deadLetter(reason);
    job.acked = true;
  });
  return false;
}
