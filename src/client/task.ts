/**
 * Task definitions: options, typed handles, and the one convention for how
 * Python keyword arguments reach a TypeScript function.
 *
 * Keyword-argument convention:
 * - A TypeScript task receives positional arguments.
 * - If the task declares `params: ['x', 'y']`, incoming kwargs are bound to
 *   those names by position, after the positional args, exactly as Python
 *   binds `f(1, y=2)`. A kwarg with an unknown name, or one that repeats a
 *   positional argument, fails the task with `TypeError` before it runs.
 * - If the task declares `kwargs: true`, its last parameter always receives
 *   the kwargs object (`{}` when none were sent), like Python's `**kwargs`.
 * - Otherwise a message with kwargs fails with `TypeError`.
 */
import type { ZodType } from 'zod';
import { ValidationError } from '../errors.ts';
import type { AsyncResult } from './result.ts';
import type { SendRateLimit } from '../config/schema.ts';
import type { SignatureDict } from '../protocol/types.ts';

/** A send rate limit (its type lives with the settings schema, which validates it). */
export type { SendRateLimit } from '../config/schema.ts';

/** Any function usable as a task body (parameters are checked per task). */
export type TaskFunction = (...args: never[]) => unknown;

/** Options for `app.task()`. Durations are in seconds, as in Celery. */
export interface TaskOptions {
  /** Queue to send to (default: the route, then `taskDefaultQueue`). */
  queue?: string;
  /** Default priority (Redis/SQLite: 0..9, lower first; AMQP: higher first). */
  priority?: number;
  /** Parameter names, for binding Python kwargs by name. */
  params?: readonly string[];
  /** The last parameter receives the kwargs object. */
  kwargs?: boolean;
  /** Ack after the task finished (overrides `taskAcksLate`). */
  acksLate?: boolean;
  /** With acksLate: requeue when the child process dies. */
  rejectOnWorkerLost?: boolean;
  /** Most redeliveries after lost runs before the message is dead-lettered (overrides `taskMaxRedeliveries`). */
  maxRedeliveries?: number;
  /** Store STARTED when the task begins. */
  trackStarted?: boolean;
  /** Do not store the result. */
  ignoreResult?: boolean;
  /** Most retries before the task fails (default 3; null = unlimited). */
  maxRetries?: number | null;
  /** Countdown of `retry()` when none is given (default 180 s). */
  defaultRetryDelay?: number;
  /** Exponential backoff for retries: true = factor 1 s, or the factor in seconds. */
  retryBackoff?: boolean | number;
  /** Cap of the backoff in seconds (default 600). */
  retryBackoffMax?: number;
  /** Full jitter on the backoff (default true). */
  retryJitter?: boolean;
  /** Retry automatically when the task throws one of these (by error class or predicate). */
  autoretryFor?: ReadonlyArray<abstract new (...args: never[]) => Error> | ((err: unknown) => boolean);
  /** Hard time limit (seconds): the child process running the task is killed. */
  timeLimit?: number;
  /** Soft time limit (seconds): the task's `signal` aborts. */
  softTimeLimit?: number;
  /** Execution rate limit per worker, Celery's format: `'10/s'`, `'100/m'`, `'5/h'`. */
  rateLimit?: string;
  /**
   * Submission rate limit of this task on the client (CEL-019): `'100/s'`,
   * or `{ rate, burst?, shared? }` where `shared` names a bucket kept in
   * Redis or PostgreSQL for every producer process. Over it, sending fails with
   * `RateLimitedError` (or waits, with the `sendRateLimitWait` setting).
   */
  sendRateLimit?: SendRateLimit;
  /** Default expiry of sent messages, in seconds. */
  expires?: number;
  /** zod schemas for the positional args (a tuple) and the kwargs object; checked at send and before run. */
  schema?: { args?: ZodType; kwargs?: ZodType };
}

/** Per-send options of `applyAsync` (Celery's apply_async options). */
export interface SendOptions {
  /** Run no earlier than this many seconds from now. */
  countdown?: number;
  /** Run no earlier than this time. */
  eta?: Date | number;
  /** Seconds from now, or a time, after which the task is revoked instead of run. */
  expires?: number | Date;
  priority?: number;
  queue?: string;
  /** Use this id instead of a new UUID. */
  taskId?: string;
  ignoreResult?: boolean;
  /** Hard time limit for this call, seconds. */
  timeLimit?: number;
  /** Soft time limit for this call, seconds. */
  softTimeLimit?: number;
  /** Display name for logs and monitors. */
  shadow?: string;
  /** Parent and root ids (set automatically when sent from inside a task). */
  parentId?: string;
  rootId?: string;
  /** Compress the body as kombu's `zlib` (alias `gzip`) does; Python workers inflate it. */
  compression?: 'zlib' | 'gzip';
  // Celery send options added for issue 17 item 7 (checked in send-options.ts).
  /** The `retries` header: how many times this task has been retried already (Celery's `retries`; default 0). */
  retries?: number;
  /**
   * Extra message headers (Celery's `headers`), which a Python task reads as
   * `self.request.<name>`. JSON values; a name of a standard header
   * (`id`, `task`, `retries`, …), `compression` or `celeriac_*` is refused
   * (Celery would let it overwrite the message's own).
   */
  headers?: Readonly<Record<string, unknown>>;
  /** The `reply_to` property (Celery's `reply_to`): the queue an `rpc://` result is sent to. */
  replyTo?: string;
  /** Canvas: signatures called with the result when the task succeeds (Celery's `link`). */
  link?: Linkable | readonly Linkable[];
  /** Canvas: signatures called when the task fails (Celery's `link_error`). */
  linkError?: Linkable | readonly Linkable[];
}

/** A canvas element (`sig()`, `si()`, `chain()`…) as a send option takes it. */
export interface Linkable {
  toDict(): SignatureDict;
}

/** Kwargs type for a task with `params`: each name maps to its positional type. */
export type KwargsByName<P extends readonly string[], A extends readonly unknown[]> = {
  [I in keyof P as I extends `${number}` ? (P[I] extends string ? P[I] : never) : never]?: I extends keyof A ? A[I] : unknown;
};

/** All but the last element of a tuple. */
export type Init<T extends readonly unknown[]> = T extends readonly [...infer H, unknown] ? H : never;
/** The last element of a tuple. */
export type Last<T extends readonly unknown[]> = T extends readonly [...unknown[], infer L] ? L : never;

/** A typed handle for sending one task. */
export interface TaskHandle<A extends readonly unknown[], R, K = Record<string, never>> {
  readonly name: string;
  /** Send with positional arguments; resolves once the broker holds the message. */
  delay(...args: A): Promise<AsyncResult<R>>;
  /** Send with arguments, keyword arguments and options. */
  applyAsync(args: A, kwargs?: K, options?: SendOptions): Promise<AsyncResult<R>>;
}

/** What the registry keeps for each task. */
export interface TaskDefinition {
  name: string;
  fn: ((...args: unknown[]) => unknown) | undefined;
  options: TaskOptions;
}

/**
 * Bind positional and keyword arguments to the call's argument list,
 * following the module's convention. Throws `ValidationError` (reported as
 * Python's TypeError) when kwargs cannot be bound.
 */
export function bindArguments(def: TaskDefinition, args: readonly unknown[], kwargs: Readonly<Record<string, unknown>>): unknown[] {
  if (def.options.kwargs) return [...args, { ...kwargs }];
  // No kwargs: the common case, and no copy (args are the decoded message's own array).
  let none = true;
  for (const _ in kwargs) {
    none = false;
    break;
  }
  if (none) return args as unknown[];
  const names = Object.keys(kwargs);
  const params = def.options.params;
  if (!params) {
    throw new ValidationError(`${def.name}() takes no keyword arguments but got ${names.map((n) => JSON.stringify(n)).join(', ')}`, {
      field: `kwargs.${names[0]}`,
      hint: "declare the parameter names with the task option params: ['x', 'y'], or kwargs: true",
    });
  }
  const out: unknown[] = [...args];
  for (const name of names) {
    const index = params.indexOf(name);
    if (index < 0) throw new ValidationError(`${def.name}() got an unexpected keyword argument ${JSON.stringify(name)}`, { field: `kwargs.${name}` });
    if (index < args.length) throw new ValidationError(`${def.name}() got multiple values for argument ${JSON.stringify(name)}`, { field: `kwargs.${name}` });
    out[index] = kwargs[name];
  }
  for (let i = 0; i < out.length; i++) if (!(i in out)) out[i] = undefined;
  return out;
}

/**
 * Check args and kwargs against the task's zod schemas. Returns the parsed
 * values (zod may coerce); throws `ValidationError` naming the field.
 */
export function validateArguments(
  def: TaskDefinition,
  args: readonly unknown[],
  kwargs: Readonly<Record<string, unknown>>,
): { args: unknown[]; kwargs: Record<string, unknown> } {
  const schema = def.options.schema;
  if (!schema) return { args: args as unknown[], kwargs: kwargs as Record<string, unknown> };
  let outArgs: unknown[] = [...args];
  let outKwargs: Record<string, unknown> = { ...kwargs };
  if (schema.args) {
    const r = schema.args.safeParse(args);
    if (!r.success) throw zodToValidation(def.name, 'args', r.error);
    outArgs = r.data as unknown[];
  }
  if (schema.kwargs) {
    const r = schema.kwargs.safeParse(kwargs);
    if (!r.success) throw zodToValidation(def.name, 'kwargs', r.error);
    outKwargs = r.data as Record<string, unknown>;
  }
  return { args: outArgs, kwargs: outKwargs };
}

function zodToValidation(task: string, part: 'args' | 'kwargs', error: { issues: ReadonlyArray<{ path: ReadonlyArray<PropertyKey>; message: string }> }): ValidationError {
  const issue = error.issues[0];
  const path = issue ? issue.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('') : '';
  const field = `${part}${path}`;
  return new ValidationError(`invalid arguments for ${task}: ${field}: ${issue?.message ?? 'invalid'}`, {
    field,
    hint: 'fix the value or the task schema',
  });
}

/** Parse Celery's rate limit string (`'10/s'`, `'100/m'`, `'1.5/h'`, `'10'`) to tasks per second; 0 = no limit. */
export function parseRateLimit(text: string | number | null | undefined): number {
  if (text === null || text === undefined || text === '' || text === 0 || text === '0') return 0;
  if (typeof text === 'number') return text;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(?:\/\s*([smh]))?\s*$/.exec(text);
  if (!m) throw new ValidationError(`Invalid rate limit string: ${JSON.stringify(text)}`, { hint: "use '<n>/s', '<n>/m' or '<n>/h'" });
  const n = Number(m[1]);
  const unit = m[2] ?? 's';
  return unit === 's' ? n : unit === 'm' ? n / 60 : n / 3600;
}
