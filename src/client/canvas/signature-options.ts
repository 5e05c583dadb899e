/**
 * Per-signature options, typed, and their Celery names on the wire.
 */
import { ValidationError } from '../../errors.ts';
import type { JsonValue } from '../../protocol/types.ts';

/** Per-signature options (Celery's apply_async options that travel inside a signature). */
export interface SignatureOptions {
  /** Use this id instead of a new UUID (a group's or chord header's id is its group id). */
  taskId?: string;
  queue?: string;
  priority?: number;
  /** Run no earlier than this many seconds after the message is sent. */
  countdown?: number;
  /** Seconds after sending, after which the task is revoked instead of run. */
  expires?: number;
  /** Hard and soft time limits of this call, seconds. */
  timeLimit?: number;
  softTimeLimit?: number;
  /** Display name for logs and monitors. */
  shadow?: string;
  ignoreResult?: boolean;
}

/** Celery's option names for {@link SignatureOptions}. */
const OPTION_NAMES: Readonly<Record<keyof SignatureOptions, string>> = {
  taskId: 'task_id',
  queue: 'queue',
  priority: 'priority',
  countdown: 'countdown',
  expires: 'expires',
  timeLimit: 'time_limit',
  softTimeLimit: 'soft_time_limit',
  shadow: 'shadow',
  ignoreResult: 'ignore_result',
};

/** Turn typed options into Celery's option dict; unknown keys are refused (a typo must not vanish). */
export function optionsToWire(options: SignatureOptions): Record<string, JsonValue> {
  const out: Record<string, JsonValue> = {};
  for (const [key, value] of Object.entries(options)) {
    const name = OPTION_NAMES[key as keyof SignatureOptions];
    if (name === undefined) throw new ValidationError(`unknown signature option ${JSON.stringify(key)}`, { field: key, hint: `use one of ${Object.keys(OPTION_NAMES).join(', ')}` });
    if (value !== undefined) out[name] = value as JsonValue;
  }
  return out;
}

