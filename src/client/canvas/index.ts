/**
 * The public canvas API: signatures and workflows (Celery's `canvas`),
 * result sets, and restoring a saved group by id.
 */
import type { ResultStore } from '../results.ts';
import { GroupResult } from './result-set.ts';

export { Signature, Chain, Group, Chord, sig, si, chain, group, chord, map, starmap, chunks, fromDict, type Canvas, type TaskRef, type SignatureOptions, type CanvasApplyOptions, type CanvasHost } from './signature.ts';
export { ResultSet, GroupResult, type JoinOptions } from './result-set.ts';
export type { ErrbackRequest } from './errback-request.ts';

/**
 * Read a group saved with `GroupResult.save()` (by Celeriac or by Python's
 * `GroupResult.save()`), through an app's result store; undefined when
 * none is saved under `groupId`.
 */
export async function restoreGroup(app: { resultStore(): Promise<ResultStore | undefined> }, groupId: string): Promise<GroupResult | undefined> {
  const store = await app.resultStore();
  if (!store) return undefined;
  return GroupResult.restore(store, groupId);
}
