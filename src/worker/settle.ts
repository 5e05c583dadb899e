/**
 * Settling deliveries: every message is acked, given back or dead-lettered
 * exactly once, results are stored before a late ack, and lost runs are
 * counted (loss-ledger.ts).
 */
import type { ReplyRoute, StoredRecord } from '../core/backend.ts';
import type { ResultMeta } from '../protocol/result-meta.ts';
import { pushShared, type LossKind } from './loss-ledger.ts';
import { sleep, type Job, type WorkerState } from './state.ts';
import type { TaskEvent } from './types.ts';

/** Waits between attempts to store a batch of results before its messages are given back. */
const SETTLE_RETRY_DELAYS_MS = [250, 1000, 3000];

/**
 * Give a job's message back to the broker for redelivery: the job counts as
 * settled, a lost run is counted when `loss` says so, and its replay hold
 * is released (the same message will come again). Callers check
 * `job.acked` first where another path may have settled it.
 */
export function giveBack(w: WorkerState, job: Job, loss?: LossKind): Promise<void> {
  job.acked = true;
  if (loss) countLoss(w, job.req.id, loss);
  w.rt.security.released?.(job.delivery.message);
  return job.delivery.reject(true);
}

/** Ack a job's message once; its replay hold is settled (or released, when the ack reached nobody). */
export async function ackOnce(w: WorkerState, job: Job): Promise<void> {
  if (job.acked) return;
  job.acked = true;
  await job.delivery.ack();
  // An ack on a closed channel reaches nobody: the broker redelivers, so the nonce is released, not settled.
  if (job.delivery.stale) w.rt.security.released?.(job.delivery.message);
  else w.rt.security.settled?.(job.delivery.message);
}

/**
 * Store one record. `to` is the message's reply route (its `reply_to` and
 * `correlation_id`): the `rpc://` backend sends the record there; stores
 * keyed by task id ignore it.
 */
export function storeMeta(w: WorkerState, meta: ResultMeta, to?: ReplyRoute): Promise<void> {
  return w.store ? w.store.store(meta, to) : Promise.resolve();
}

/** Count a lost run in the ledger (and tell the supervisor, which keeps the node's ledger). */
export function countLoss(w: WorkerState, id: string, kind: LossKind): void {
  w.ledger.record(id, kind);
  // In a prefork child the supervisor keeps the node's ledger and writes the shared one; alone, write it here.
  if (w.onLoss) w.onLoss(id, kind);
  else if (w.store) void pushShared(w.ledger, w.store.backend, [id], w.rt.settings.resultExpires).catch(() => undefined);
}

/** A FAILURE stored for good: no redelivery of this task may run again (loss-ledger.ts). */
export function finalizeLoss(w: WorkerState, id: string): void {
  w.ledger.finalize(id);
  if (w.onLoss) w.onLoss(id, 'final');
  else if (w.store) void pushShared(w.ledger, w.store.backend, [id], w.rt.settings.resultExpires).catch(() => undefined);
}

/** Queue a successful job's encoded result for this turn's store batch (then one ack batch). */
export function settleInBatch(w: WorkerState, job: Job, record: StoredRecord): void {
  w.settleJobs.push(job);
  w.settleRecords.push(record);
  if (!w.settleScheduled) {
    w.settleScheduled = true;
    w.finalizing++;
    process.nextTick(() => flushSettled(w));
  }
}

/** Store the batch's results in one call; once stored, ack them (late ack: never before the result is safe). */
function flushSettled(w: WorkerState): void {
  const jobs = w.settleJobs;
  const records = w.settleRecords;
  w.settleJobs = [];
  w.settleRecords = [];
  w.settleScheduled = false;
  storeWithRetry(w, records).then(
    () => ackSettled(w, jobs),
    (err: unknown) => {
      w.logger.error({ err, tasks: jobs.length }, 'could not store results; requeueing the messages (counted against their redelivery limit)');
      const requeues: Promise<unknown>[] = [];
      for (const job of jobs) if (!job.acked) requeues.push(giveBack(w, job, 'settle').catch(() => undefined));
      void Promise.all(requeues).then(() => settledBatch(w, jobs));
    },
  );
}

/**
 * Store results, retrying a failed store in place a few times (a backend
 * that blinks must not make tasks that ran run again); the message stays
 * unacked meanwhile, so nothing is lost if this process dies.
 */
async function storeWithRetry(w: WorkerState, records: StoredRecord[]): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await w.store!.storeRecords(records);
    } catch (err) {
      if (attempt >= SETTLE_RETRY_DELAYS_MS.length || w.stopping) throw err;
      w.logger.warn({ err, tasks: records.length, attempt: attempt + 1 }, 'could not store results; retrying');
      await sleep(SETTLE_RETRY_DELAYS_MS[attempt]!);
    }
  }
}

function ackSettled(w: WorkerState, jobs: Job[]): void {
  // Adapters that batch acks hand every ack of a turn the same promise: wait once per distinct promise.
  const waits: Promise<void>[] = [];
  let last: Promise<void> | undefined;
  for (const job of jobs) {
    if (job.acked) continue;
    job.acked = true;
    const p = job.delivery.ack();
    if (p !== last) waits.push((last = p));
  }
  const done = (): void => {
    const { settled, released } = w.rt.security;
    if (settled) for (const job of jobs) (job.delivery.stale ? released : settled)?.(job.delivery.message);
    settledBatch(w, jobs);
  };
  if (waits.length === 0) done();
  else
    (waits.length === 1 ? waits[0]! : Promise.all(waits)).then(done, (err: unknown) => {
      w.logger.error({ err, tasks: jobs.length }, 'could not ack stored tasks; the broker will redeliver them');
      settledBatch(w, jobs);
    });
}

function settledBatch(w: WorkerState, jobs: Job[]): void {
  w.finalizing--;
  if (w.onTaskEvents) {
    const events: TaskEvent[] = [];
    for (const job of jobs) if (job.reported) events.push({ type: 'finished', id: job.req.id, tag: job.delivery.deliveryTag });
    if (events.length > 0) w.onTaskEvents(events);
  }
  afterSettling(w);
}

/** A suspect waits for this worker to be idle (nothing running or settling) before it runs alone. */
export function afterSettling(w: WorkerState): void {
  if (w.isolationWaiting && w.finalizing === 0) {
    w.isolationWaiting = false;
    w.drain();
  }
}
