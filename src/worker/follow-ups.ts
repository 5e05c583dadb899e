/**
 * Messages a worker sends because of an outcome (pure): the re-sent message
 * of a retry. (Chain steps, callbacks and errbacks: worker/canvas/.)
 */
import type { TaskMessageInput, TaskRequest } from '../protocol/task-message.ts';

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

/** Celery's result tuple of a child task: `[[id, null], null]`. */
export function childTuple(id: string): unknown[] {
  return [[id, null], null];
}
