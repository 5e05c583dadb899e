/**
 * Messages a worker sends because of an outcome (pure): the re-sent message
 * of a retry, the next step of a chain, link callbacks and errbacks.
 */
import { newId } from '../protocol/ids.ts';
import type { TaskMessageInput, TaskRequest } from '../protocol/task-message.ts';
import type { JsonValue, SignatureDict } from '../protocol/types.ts';

/** A message to publish, with its queue when the signature names one. */
export interface FollowUp {
  queue: string | undefined;
  input: TaskMessageInput;
}

/**
 * The retry's copy of a message: same id, args, group, limits and canvas,
 * `retries + 1`, the new eta; `parent_id` kept, or set to the task's own id
 * when it had none (as Celery does).
 */
export function retryMessageInput(req: TaskRequest, eta: number): TaskMessageInput {
  return {
    task: req.task,
    id: req.id,
    args: req.args,
    kwargs: req.kwargs,
    eta,
    expires: req.expires,
    group: req.group,
    groupIndex: req.groupIndex,
    retries: req.retries + 1,
    timeLimit: req.timeLimit,
    rootId: req.rootId,
    parentId: req.parentId ?? req.id,
    shadow: req.shadow,
    ignoreResult: req.ignoreResult,
    priority: req.priority,
    replyTo: req.replyTo,
    embed: req.embed,
  };
}

function str(v: JsonValue | undefined): string | undefined {
  return typeof v === 'string' && v.length > 0 ? v : undefined;
}

function fromSignature(sig: SignatureDict, prepend: readonly unknown[], parent: TaskRequest, now: number, chainRest: SignatureDict[] | null): FollowUp {
  const o = sig.options ?? {};
  const id = str(o.task_id) ?? newId();
  const countdown = typeof o.countdown === 'number' ? o.countdown : undefined;
  const link = Array.isArray(o.link) ? (o.link as unknown as SignatureDict[]) : o.link ? [o.link as unknown as SignatureDict] : null;
  const linkError = Array.isArray(o.link_error) ? (o.link_error as unknown as SignatureDict[]) : o.link_error ? [o.link_error as unknown as SignatureDict] : null;
  return {
    queue: str(o.queue),
    input: {
      task: sig.task,
      id,
      args: sig.immutable ? sig.args : [...prepend, ...sig.args],
      kwargs: sig.kwargs,
      eta: countdown !== undefined ? now + countdown * 1000 : null,
      group: str(o.group_id) ?? null,
      groupIndex: typeof o.group_index === 'number' ? o.group_index : null,
      rootId: parent.rootId,
      parentId: parent.id,
      priority: typeof o.priority === 'number' ? o.priority : undefined,
      replyTo: str(o.reply_to),
      embed: {
        callbacks: link,
        errbacks: linkError,
        chain: chainRest && chainRest.length > 0 ? chainRest : null,
        chord: o.chord && typeof o.chord === 'object' ? (o.chord as unknown as SignatureDict) : null,
      },
    },
  };
}

/** After SUCCESS: the chain's next step (the last element) and each link callback, with the result prepended. */
export function successFollowUps(req: TaskRequest, result: unknown, now: number = Date.now()): FollowUp[] {
  const out: FollowUp[] = [];
  for (const cb of req.embed.callbacks ?? []) out.push(fromSignature(cb, [result], req, now, null));
  const chain = req.embed.chain;
  if (chain && chain.length > 0) {
    const next = chain[chain.length - 1]!;
    out.push(fromSignature(next, [result], req, now, chain.slice(0, -1)));
  }
  return out;
}

/** After FAILURE: each errback, called old-style with the failed task's id. */
export function failureFollowUps(req: TaskRequest, now: number = Date.now()): FollowUp[] {
  return (req.embed.errbacks ?? []).map((eb) => fromSignature(eb, [req.id], req, now, null));
}

/** Celery's result tuple of a child task: `[[id, null], null]`. */
export function childTuple(id: string): unknown[] {
  return [[id, null], null];
}
