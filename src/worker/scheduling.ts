/**
 * When jobs start: ETA holds (which widen the prefetch window like Celery's
 * qos increments), per-task rate limits, and the slots of the concurrency,
 * including the isolation of a suspect of lost runs.
 */
import { parseRateLimit } from '../client/task.ts';
import { launch, prepare } from './execution.ts';
import { expired } from './outcomes.ts';
import { TokenBucket } from './rate-limit.ts';
import type { Job, WorkerState } from './state.ts';

const MAX_TIMER_MS = 2 ** 31 - 1;

/** Keep a message until `until`; ETA holds widen the prefetch window like Celery's qos increments. */
export function hold(w: WorkerState, job: Job, until: number, eta: boolean): void {
  if (eta) {
    w.heldEta++;
    w.consumer?.setPrefetch(w.basePrefetch + w.heldEta);
  }
  const wake = (): void => {
    const left = until - Date.now();
    if (left > 0) {
      w.held.set(job, setTimeout(wake, Math.min(left, MAX_TIMER_MS)));
      return;
    }
    w.held.delete(job);
    if (eta) {
      w.heldEta--;
      w.consumer?.setPrefetch(w.basePrefetch + w.heldEta);
    }
    if (w.stopping) return;
    if (!expired(w, job)) admit(w, job);
  };
  w.held.set(job, setTimeout(wake, Math.min(Math.max(0, until - Date.now()), MAX_TIMER_MS)));
}

/** Apply the rate limit, then queue for execution. */
export function admit(w: WorkerState, job: Job): void {
  const rate = job.def.options.rateLimit;
  if (rate) {
    let bucket = w.buckets.get(job.def.name);
    if (!bucket) {
      bucket = new TokenBucket(parseRateLimit(rate));
      w.buckets.set(job.def.name, bucket);
    }
    const wait = bucket.take();
    if (wait > 0) {
      hold(w, job, Date.now() + wait, false);
      return;
    }
  }
  w.pending.push(job);
  // Deliveries arrive in batches (one reserve call): start them together, in one pass.
  if (!w.drainQueued) {
    w.drainQueued = true;
    queueMicrotask(() => {
      w.drainQueued = false;
      drain(w);
    });
  }
}

/**
 * Start queued jobs while there is room. Jobs taken in one pass are
 * announced to the supervisor together, before any of them runs; a task
 * that finishes synchronously frees its slot at once (re-entering here is
 * a no-op: the loop below picks the slot up).
 */
export function drain(w: WorkerState): void {
  if (w.draining) return;
  w.draining = true;
  try {
    let waitForIdle = false;
    while (w.active < w.concurrency && w.pending.length > 0 && !w.stopping && !w.isolating && !waitForIdle) {
      const batch: Job[] = [];
      while (w.active < w.concurrency && w.pending.length > 0 && !w.stopping && !w.isolating) {
        const job = w.pending.shift()!;
        w.active++;
        if (!prepare(w, job)) {
          w.active--;
          continue;
        }
        if (job.isolate) {
          if (w.active > 1 || batch.length > 0 || w.finalizing > 0) {
            // Wait until nothing else runs or settles (the supervisor must see it alone); freeSlot or the
            // last settlement drains again.
            w.active--;
            w.pending.unshift(job);
            waitForIdle = true;
            w.isolationWaiting = true;
            break;
          }
          w.isolating = true;
        }
        batch.push(job);
      }
      if (batch.length > 0) launch(w, batch);
    }
  } finally {
    w.draining = false;
  }
}
