/**
 * What the canvas code of a worker needs (a `WorkerState` is one, and so is
 * what the prefork supervisor builds for a task whose process died): the
 * result store, the logger, and from the app the Producer (follow-ups are
 * routed, signed and capped like any `delay()`) and the task registry.
 */
import type { CanvasSender } from '../../client/canvas/apply.ts';
import type { ResultStore } from '../../client/results.ts';
import type { Embed, JsonValue } from '../../protocol/types.ts';
import type { Logger } from '../../observability/logging.ts';
import type { WorkerRuntime } from '../runtime.ts';

/** The worker as the canvas code sees it. */
export interface CanvasWorker {
  readonly store: ResultStore | undefined;
  readonly logger: Logger;
  readonly rt: Pick<WorkerRuntime, 'producer' | 'registry'>;
}

/** The parts of a task request the canvas code reads (a `TaskRequest` is one). */
export interface CanvasRequest {
  id: string;
  task: string;
  args: readonly JsonValue[];
  kwargs: Readonly<Record<string, JsonValue>>;
  group: string | null;
  groupIndex: number | null;
  rootId: string;
  parentId: string | null;
  retries: number;
  embed: Pick<Embed, 'chain' | 'chord' | 'errbacks'> & Partial<Pick<Embed, 'callbacks'>>;
}

/** The canvas sender of a worker. */
export function workerSender(w: CanvasWorker): CanvasSender {
  return { sendFollowUp: (f) => w.rt.producer.sendFollowUp(f), store: w.store };
}
