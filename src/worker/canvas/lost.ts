/**
 * A task whose process died (prefork: a hard time limit, a terminate, a
 * crash) is failed by the supervisor, which never saw its message: the
 * child puts the canvas part of the request in the task's started line,
 * and the supervisor settles it as `mark_as_failure` would (the chord
 * part, the rest of a chain FAILURE, the errbacks). Only tasks with canvas
 * work carry it; every other started line is as before.
 */
import { decodeJsonText, stringifyJson } from '../../codec/json.ts';
import type { ExceptionInfo } from '../../protocol/result-meta.ts';
import type { TaskRequest } from '../../protocol/task-message.ts';
import { afterFailureStored, afterRevokedStored } from './outcomes.ts';
import type { CanvasRequest, CanvasWorker } from './sender.ts';

/** The `canvas` field of a started event, when the request has canvas work to do on failure. */
export function canvasOfStarted(req: TaskRequest): { canvas?: string } {
  const { chain, chord, errbacks } = req.embed;
  if (!chord && !(chain && chain.length > 0) && !(errbacks && errbacks.length > 0)) return {};
  const c: CanvasRequest = {
    id: req.id,
    task: req.task,
    args: req.args,
    kwargs: req.kwargs,
    group: req.group,
    groupIndex: req.groupIndex,
    rootId: req.rootId,
    parentId: req.parentId,
    retries: req.retries,
    embed: { chain, chord, errbacks },
  };
  // Exact integers stay exact (bigint in, bigint out); JSON strings escape the line's tabs and newlines.
  return { canvas: stringifyJson(c) };
}

/** After the supervisor stored a lost task's FAILURE or REVOKED record. */
export async function settleLostCanvas(w: CanvasWorker, canvas: string, status: 'FAILURE' | 'REVOKED', exc: ExceptionInfo): Promise<void> {
  let req: CanvasRequest;
  try {
    req = decodeJsonText(canvas) as CanvasRequest;
  } catch (err) {
    w.logger.error({ err }, 'a started line carries canvas data that does not parse; its chain, chord and errbacks are not settled');
    return;
  }
  if (status === 'REVOKED') return afterRevokedStored(w, req, exc);
  return afterFailureStored(w, req, exc, null);
}
