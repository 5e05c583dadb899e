/**
 * The states a running task may store for itself (`updateState`): any
 * custom state Celery would store, but not a ready state, which only the
 * task's end decides (a stored SUCCESS is never overwritten, so a task
 * that wrote one itself would lose its real result).
 */
import { ValidationError } from '../errors.ts';
import { READY_STATES } from '../protocol/result-meta.ts';

/** Longest state name accepted (Celery's own are at most 8 characters; the cap keeps records small). */
export const MAX_STATE_LENGTH = 64;

/** Throws `ValidationError` for a state a running task may not store. */
export function checkProgressState(state: unknown): asserts state is string {
  if (typeof state !== 'string' || state.length === 0 || state.length > MAX_STATE_LENGTH) {
    throw new ValidationError(`updateState(): the state must be a non-empty string of at most ${MAX_STATE_LENGTH} characters`, {
      field: 'state',
      hint: "use a custom state name such as 'PROGRESS'",
    });
  }
  if (READY_STATES.has(state)) {
    throw new ValidationError(`updateState(): ${state} is a ready state, which only the task's end stores`, {
      field: 'state',
      hint: 'return a value (SUCCESS) or throw (FAILURE) instead; use a custom state such as PROGRESS while running',
    });
  }
}
