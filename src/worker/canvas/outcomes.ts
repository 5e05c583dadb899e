/**
 * The canvas part of a task's outcome (hooked from worker/outcomes.ts):
 *
 * - success: link callbacks, then the chain's next step, each given the
 *   result (unless immutable) and sent as a canvas (a step may be a chord
 *   or a group in a Python-built chain); after the result is stored, the
 *   chord part;
 * - failure (Celery's `mark_as_failure`): the chord part, every remaining
 *   chain step stored as FAILURE with the same exception (so whoever waits
 *   on the chain's last id is released) and its chord part when it is a
 *   chord member, then the task's errbacks, once each.
 */
import { applyDict } from '../../client/canvas/apply.ts';
import { buildResultMeta, type ExceptionInfo } from '../../protocol/result-meta.ts';
import type { SignatureDict } from '../../protocol/types.ts';
import type { TaskRequest } from '../../protocol/task-message.ts';
import { redactException } from '../exception-records.ts';
import { chordPartReturn, memberOf } from './chord.ts';
import { callErrbacks } from './errbacks.ts';
import { workerSender, type CanvasRequest, type CanvasWorker } from './sender.ts';

/** True when a success must take the slow path: callbacks, a chain, or a chord to join. */
export function hasCanvasWork(req: TaskRequest): boolean {
  return (req.embed.callbacks?.length ?? 0) > 0 || (req.embed.chain?.length ?? 0) > 0 || req.embed.chord !== null;
}

/** Send the callbacks and the chain's next step; the ids sent (the result's `children`). */
export async function sendSuccessCanvas(w: CanvasWorker, req: TaskRequest, value: unknown): Promise<string[]> {
  const sender = workerSender(w);
  const ids: string[] = [];
  const ctx = { partialArgs: [value === undefined ? null : value], parentId: req.id, rootId: req.rootId };
  for (const cb of req.embed.callbacks ?? []) ids.push((await applyDict(sender, cb, ctx)).id);
  const chain = req.embed.chain;
  if (chain && chain.length > 0) ids.push((await applyDict(sender, chain[chain.length - 1]!, { ...ctx, chain: chain.slice(0, -1) })).id);
  return ids;
}

/** After the SUCCESS record is stored: the chord part. */
export function afterSuccessStored(w: CanvasWorker, req: TaskRequest, value: unknown): Promise<void> {
  return chordPartReturn(w, memberOf(req), 'SUCCESS', value);
}

function str(v: unknown): string | null {
  return typeof v === 'string' && v.length > 0 ? v : null;
}

/** After the FAILURE record is stored (see the module comment). */
/** `traceback` comes redacted. */
export async function afterFailureStored(w: CanvasWorker, req: CanvasRequest, exc: ExceptionInfo, traceback: string | null): Promise<void> {
  const stored = redactException(exc);
  await chordPartReturn(w, memberOf(req), 'FAILURE', stored);
  for (const step of req.embed.chain ?? []) {
    const o = step.options ?? {};
    const id = str(o.task_id);
    if (id) await w.store?.store(buildResultMeta({ taskId: id, status: 'FAILURE', result: stored, traceback, groupId: str(o.group_id), parentId: str(o.parent_id) }));
    if (id && o.chord && typeof o.chord === 'object') {
      await chordPartReturn(w, { id, group: str(o.group_id), groupIndex: typeof o.group_index === 'number' ? o.group_index : null, rootId: req.rootId, chord: o.chord as unknown as SignatureDict }, 'FAILURE', stored);
    }
  }
  await callErrbacks(w, req.embed.errbacks ?? [], { id: req.id, task: req.task, args: req.args, kwargs: req.kwargs, group: req.group, root_id: req.rootId, parent_id: req.parentId, retries: req.retries }, exc, traceback);
}

/** After a REVOKED record (expired or revoked): the chord part, as Celery's `mark_as_revoked` does (the body then fails with ChordError). */
export function afterRevokedStored(w: CanvasWorker, req: CanvasRequest, exc: unknown): Promise<void> {
  return chordPartReturn(w, memberOf(req), 'REVOKED', exc);
}
