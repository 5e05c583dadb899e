/**
 * A message the worker refuses (undecodable, a content type it does not
 * accept, a compression bomb, a body that is not a task) is dead-lettered;
 * without a record its caller would wait until its own timeout. So the
 * worker stores one FAILURE for it, in Celery's format, when all of these
 * hold:
 *
 * - its id is the message's own `id` header (never `correlation_id`, never
 *   guessed from a message whose headers could not be read);
 * - the worker keeps results, and the message did not ask to ignore them;
 * - senders are not authenticated by signatures in this deployment: where
 *   they are, a refused message's id is unauthenticated and a record under
 *   it could fail someone else's task, so none is written (the dead letter
 *   and the log still name it);
 * - it was not refused as a replay by the admission check (the id is a
 *   real message's, whose own record must stand);
 * - no record exists for that id yet (a refused copy of a task that already
 *   has a result must not replace it), and this process has not written
 *   one for it already: never twice.
 *
 * Exception types: kombu's `ContentDisallowed` and `DecodeError` for what
 * could not be decoded, Celery's `InvalidTaskError` for a decoded body that
 * is not a task.
 */
import type { WireMessage } from '../protocol/types.ts';
import { ContentDisallowedError, ProtocolError } from '../errors.ts';
import { buildResultMeta, type ExceptionInfo } from '../protocol/result-meta.ts';
import { redactException } from './exception-records.ts';
import { storeMeta } from './settle.ts';
import type { WorkerState } from './state.ts';

/** Ids each worker wrote a dead-letter FAILURE for, most recent last (bounded). */
const writtenBy = new WeakMap<WorkerState, Set<string>>();
const WRITTEN_LIMIT = 10_000;
/** Longest reason kept in the record: it may quote the message (a content type), which its sender chose. */
const MAX_REASON = 512;

/** The exception record of a refused message. */
export function deadLetteredException(err: unknown, reason: string): ExceptionInfo {
  const text = `message dead-lettered: ${reason.length > MAX_REASON ? `${reason.slice(0, MAX_REASON)}…` : reason}`;
  if (err instanceof ContentDisallowedError) return { exc_type: 'ContentDisallowed', exc_message: [text], exc_module: 'kombu.exceptions' };
  if (err instanceof ProtocolError) return { exc_type: 'InvalidTaskError', exc_message: [text], exc_module: 'celery.exceptions' };
  return { exc_type: 'DecodeError', exc_message: [text], exc_module: 'kombu.exceptions' };
}

const str = (v: unknown): string | undefined => (typeof v === 'string' && v.length > 0 && v.length <= 255 ? v : undefined);

/**
 * Store the FAILURE of a refused, dead-lettered message when the rules of
 * the module comment allow it. Never throws; failures are logged.
 */
export async function recordDeadLettered(w: WorkerState, message: WireMessage, err: unknown, reason: string): Promise<void> {
  const store = w.store;
  const h = message.headers;
  const id = h !== null && typeof h === 'object' ? str(h.id) : undefined;
  // A replay refused by admission names a real message, whose own record must stand.
  const replay = (err as { code?: unknown } | null)?.code === 'ERR_REFUSED';
  let written = writtenBy.get(w);
  if (!written) writtenBy.set(w, (written = new Set()));
  if (!store || !id || replay || w.rt.security.verifiesSenders || h.ignore_result === true || written.has(id)) return;
  written.add(id);
  if (written.size > WRITTEN_LIMIT) written.delete(written.values().next().value!);
  try {
    const current = await store.get(id);
    if (current.status !== 'PENDING') return;
    const p = message.properties ?? {};
    const meta = buildResultMeta({ taskId: id, status: 'FAILURE', result: redactException(deadLetteredException(err, reason)), traceback: null, groupId: str(h.group) ?? null, parentId: str(h.parent_id) ?? null });
    await storeMeta(w, meta, { replyTo: str(p.reply_to) ?? '', correlationId: str(p.correlation_id) ?? id });
  } catch (e) {
    w.logger.warn({ err: e, id }, `could not store the FAILURE of dead-lettered message ${id}`);
  }
}
