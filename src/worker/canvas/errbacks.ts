/**
 * Calling errbacks as Celery 5.2.6 does (`Backend._call_task_errbacks`):
 *
 * - new signature `(request, exc, traceback)`: an errback registered on
 *   this worker whose function declares more than one parameter (Celery's
 *   arity rule) is called here, in the worker, once;
 * - old signature `(task_id)`: every other errback (a Python task, or a
 *   one-parameter Celeriac task) is sent as a task, as a group, with the
 *   failed task's id as its argument, `parent_id` that id.
 */
import { applyDict } from '../../client/canvas/apply.ts';
import type { ErrbackRequest } from '../../client/canvas/errback-request.ts';
import { remoteErrorFromMeta, type ExceptionInfo } from '../../protocol/result-meta.ts';
import type { JsonValue, SignatureDict } from '../../protocol/types.ts';
import { workerSender, type CanvasWorker } from './sender.ts';

/** Call each errback once (see the module comment). */
export async function callErrbacks(w: CanvasWorker, errbacks: readonly SignatureDict[], request: ErrbackRequest, exc: ExceptionInfo, traceback: string | null): Promise<void> {
  if (errbacks.length === 0) return;
  const old: SignatureDict[] = [];
  for (const eb of errbacks) {
    const fn = (eb.subtask_type ?? null) === null ? w.rt.registry.get(eb.task)?.fn : undefined;
    if (fn && fn.length > 1) {
      const error = remoteErrorFromMeta({ status: 'FAILURE', result: exc, traceback, children: [], date_done: null, task_id: request.id });
      try {
        await fn(request, error, traceback);
      } catch (err) {
        w.logger.error({ err, id: request.id, errback: eb.task }, `errback ${eb.task} of task ${request.task}[${request.id}] raised`);
      }
    } else {
      old.push(eb);
    }
  }
  if (old.length === 0) return;
  const group: SignatureDict = { task: 'celery.group', args: [], kwargs: { tasks: old as unknown as JsonValue }, options: {}, subtask_type: 'group', immutable: false };
  await applyDict(workerSender(w), group, { partialArgs: [request.id], parentId: request.id, rootId: request.root_id || request.id });
}
