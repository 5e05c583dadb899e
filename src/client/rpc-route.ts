/**
 * `rpc://` results need every task the client sends to name the client's
 * reply queue as `reply_to`, and that queue to exist before the message is
 * published (Celery's `on_task_call` declares it first), or a fast worker's
 * reply would be dropped. A send option `replyTo` given by the caller wins.
 */
import type { ResultStore } from './results.ts';
import type { SendOptions } from './task.ts';

/** The options with the result backend's reply queue as `replyTo`, when the backend has one. */
export async function withReplyRoute(store: Promise<ResultStore | undefined>, options: SendOptions): Promise<SendOptions> {
  const backend = (await store)?.backend;
  if (!backend?.replyRoute || options.replyTo !== undefined) return options;
  return { ...options, replyTo: await backend.replyRoute() };
}
