/**
 * Retry decisions (pure): how long to wait, and whether retries are used up.
 */
import type { ResolvedSettings } from '../config/options.ts';
import type { TaskOptions } from '../client/task.ts';
import type { SerializableRetry } from './execute.ts';

export type RetryDecision =
  | { retry: true; eta: number }
  | { retry: false; maxRetries: number };

/**
 * Decide a retry. Explicit `countdown`/`eta` win; otherwise the task's
 * exponential backoff (factor × 2^retries, capped, with full jitter by
 * default), otherwise `defaultRetryDelay`.
 */
export function decideRetry(
  options: TaskOptions,
  settings: Pick<ResolvedSettings, 'taskDefaultRetryDelay' | 'taskMaxRetries'>,
  retries: number,
  asked: SerializableRetry,
  now: number,
  random: () => number = Math.random,
): RetryDecision {
  const max = asked.maxRetries !== undefined ? asked.maxRetries : options.maxRetries !== undefined ? options.maxRetries : settings.taskMaxRetries;
  if (max !== null && retries >= max) return { retry: false, maxRetries: max };
  if (asked.eta !== undefined) return { retry: true, eta: asked.eta };
  return { retry: true, eta: now + retryCountdownSeconds(options, settings, retries, asked.countdown, random) * 1000 };
}

/** Countdown in seconds for retry number `retries + 1`. */
export function retryCountdownSeconds(
  options: TaskOptions,
  settings: Pick<ResolvedSettings, 'taskDefaultRetryDelay'>,
  retries: number,
  countdown: number | undefined,
  random: () => number = Math.random,
): number {
  if (countdown !== undefined) return Math.max(0, countdown);
  const backoff = options.retryBackoff;
  if (backoff) {
    const factor = backoff === true ? 1 : backoff;
    const cap = options.retryBackoffMax ?? 600;
    const c = Math.min(cap, factor * 2 ** retries);
    // Full jitter, as Celery: a whole number of seconds in [0, c].
    return options.retryJitter === false ? c : Math.floor(random() * (Math.floor(c) + 1));
  }
  return options.defaultRetryDelay ?? settings.taskDefaultRetryDelay;
}
