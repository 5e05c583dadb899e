/**
 * How the worker sends canvas follow-ups: through the app's Producer (routed,
 * signed, capped like any `delay()`), with the worker's result store for
 * chord joins.
 */
import type { CanvasSender } from '../../client/canvas/apply.ts';
import type { WorkerState } from '../state.ts';

/** The canvas sender of a worker. */
export function workerSender(w: WorkerState): CanvasSender {
  return { sendFollowUp: (f) => w.rt.producer.sendFollowUp(f), store: w.store };
}
