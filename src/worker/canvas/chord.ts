/**
 * The chord join on the worker, as Celery 5.2.6's `on_chord_part_return`:
 * after a header task's outcome is stored, its part (`[1, task_id, state,
 * result]`) goes to the backend's join (Redis: the `.j` sorted set beside
 * `.t` and `.s`; SQLite and memory: a counted table or map). The worker
 * whose part completes the header sends the body with the list of results;
 * when a part is a failure, the body is stored as FAILURE `ChordError`
 * ("Dependency <id> raised <exc>") and its errbacks are called.
 *
 * Backends without a join (none of Celeriac's today) get no
 * `celery.chord_unlock`: the client refuses to send a chord there.
 */
import { applyDict } from '../../client/canvas/apply.ts';
import { reprValue } from '../../protocol/pyrepr.ts';
import { buildResultMeta, type ExceptionInfo } from '../../protocol/result-meta.ts';
import type { SignatureDict } from '../../protocol/types.ts';
import { callErrbacks } from './errbacks.ts';
import { workerSender, type CanvasRequest, type CanvasWorker } from './sender.ts';

const PROPAGATE = new Set(['FAILURE', 'REVOKED']);

/** Python's repr of a stored exception: `ValueError('boom')`. */
export function excRepr(value: unknown): string {
  const e = value as Partial<ExceptionInfo> | null;
  if (e && typeof e === 'object' && typeof e.exc_type === 'string') {
    const args = Array.isArray(e.exc_message) ? e.exc_message : [e.exc_message];
    return `${e.exc_type}(${args.map((a) => reprValue(a)).join(', ')})`;
  }
  return reprValue(value);
}

/** A chord member that is not a task message (a chain step's options): what the join needs of it. */
export interface ChordMember {
  id: string;
  group: string | null;
  groupIndex: number | null;
  rootId: string;
  chord: SignatureDict | null;
}

/** The chord membership of a received task. */
export function memberOf(req: CanvasRequest): ChordMember {
  return { id: req.id, group: req.group, groupIndex: req.groupIndex, rootId: req.rootId, chord: req.embed.chord };
}

/** Add this header part to its chord; the last part fires the body (or its ChordError). */
export async function chordPartReturn(w: CanvasWorker, m: ChordMember, state: string, result: unknown): Promise<void> {
  const body = m.chord;
  if (!body || !m.group) return;
  const store = w.store;
  const backend = store?.backend;
  if (!store || !backend?.chordPartReturn) {
    w.logger.error({ id: m.id, group: m.group }, `chord ${m.group}: the result backend has no chord join; its body ${body.task} will not run`);
    return;
  }
  const context = `celery-taskset-meta-${m.group}.j`;
  const entry = store.encodeValue([1, m.id, state, result === undefined ? null : result], context);
  const parts = await backend.chordPartReturn({ groupId: m.group, groupIndex: m.groupIndex, entry }, { expiresSeconds: store.expires });
  if (!parts) return;
  const values: unknown[] = [];
  for (const part of parts) {
    let tuple: unknown;
    try {
      tuple = store.decodeValue(part, context);
    } catch (err) {
      return chordError(w, body, `Join error: ${(err as Error).message}`);
    }
    if (!Array.isArray(tuple) || tuple.length < 4) return chordError(w, body, 'Join error: a chord part is not [1, task_id, state, result]');
    const [, tid, st, value] = tuple as [unknown, unknown, unknown, unknown];
    if (typeof st === 'string' && PROPAGATE.has(st)) return chordError(w, body, `Dependency ${String(tid)} raised ${excRepr(value)}`);
    values.push(value);
  }
  try {
    await applyDict(workerSender(w), body, { partialArgs: [values], parentId: m.id, rootId: m.rootId });
  } catch (err) {
    w.logger.error({ err, group: m.group }, `chord ${m.group}: the body could not be sent`);
    return chordError(w, body, `Callback error: ${excRepr({ exc_type: (err as Error).name, exc_message: [(err as Error).message] })}`);
  }
}

/**
 * Celery's `chord_error_from_stack`: the body's errbacks are called (old
 * style: with the body's id), then the body is stored as FAILURE ChordError.
 */
export async function chordError(w: CanvasWorker, body: SignatureDict, message: string): Promise<void> {
  const id = typeof body.options?.task_id === 'string' ? body.options.task_id : undefined;
  w.logger.error({ body: body.task, id }, `chord raised ChordError: ${message}`);
  if (!id) return;
  const exc: ExceptionInfo = { exc_type: 'ChordError', exc_message: [message], exc_module: 'celery.exceptions' };
  const linkError = body.options?.link_error;
  const errbacks = (Array.isArray(linkError) ? linkError : linkError ? [linkError] : []) as unknown as SignatureDict[];
  try {
    await callErrbacks(w, errbacks, { id, task: body.task, args: body.args ?? [], kwargs: body.kwargs ?? {}, group: null, root_id: id, parent_id: null, retries: 0 }, exc, null);
  } finally {
    await w.store?.store(buildResultMeta({ taskId: id, status: 'FAILURE', result: exc, traceback: null }));
  }
}
