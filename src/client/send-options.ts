/**
 * Per-call send options (`applyAsync`, `sendTask`, `sendMany`): every
 * option is checked at run time as well as by the type, so a misspelt or
 * unsupported option (JavaScript callers, options built at run time) is
 * refused by name instead of silently dropped; and Celery's `retries`,
 * `headers` and `reply_to` are mapped into the v2 message as Celery 5.2.6's
 * `as_task_v2`/`send_task_message` map them (`timeLimit`/`softTimeLimit`,
 * `shadow` and `compression` are mapped by the Producer itself).
 */
import { ValidationError } from '../errors.ts';
import { COMPRESSION_HEADER } from '../codec/compression.ts';
import type { TaskMessageInput } from '../protocol/task-message.ts';
import type { SendOptions } from './task.ts';

/** Every option `SendOptions` declares. */
const SEND_OPTION_NAMES = [
  'countdown', 'eta', 'expires', 'priority', 'queue', 'taskId', 'ignoreResult', 'timeLimit', 'softTimeLimit',
  'shadow', 'parentId', 'rootId', 'compression', 'retries', 'headers', 'replyTo', 'link', 'linkError',
] as const;

// A key added to SendOptions and not to the list above is a type error here, so the run-time check keeps up.
type Unlisted = Exclude<keyof SendOptions, (typeof SEND_OPTION_NAMES)[number]>;
const listsEveryOption: [Unlisted] extends [never] ? true : Unlisted = true;
void listsEveryOption;

const KNOWN: ReadonlySet<string> = new Set(SEND_OPTION_NAMES);

/** The 16 headers of a v2 message, which `headers` may not replace. */
const STANDARD_HEADERS: ReadonlySet<string> = new Set([
  'lang', 'task', 'id', 'shadow', 'eta', 'expires', 'group', 'group_index', 'retries', 'timelimit',
  'root_id', 'parent_id', 'argsrepr', 'kwargsrepr', 'origin', 'ignore_result',
]);

/** An option `SendOptions` does not have. */
export class UnknownSendOptionError extends ValidationError {
  /** The option's name as given. */
  readonly option: string;
  constructor(option: string) {
    super(`unknown send option ${JSON.stringify(option)}`, {
      field: `options.${option}`,
      hint: `the send options are ${SEND_OPTION_NAMES.join(', ')}`,
    });
    this.option = option;
  }
}

function invalid(name: string, what: string, hint?: string): ValidationError {
  return new ValidationError(`send option ${name} ${what}`, { field: `options.${name}`, ...(hint ? { hint } : {}) });
}

/** Deepest nesting of a header value, and most keys of one `headers` option. */
const MAX_HEADER_DEPTH = 8;
const MAX_HEADERS = 64;

/** True for a value every transport carries in a header and Python reads as itself. */
function isHeaderValue(v: unknown, depth = 0): boolean {
  if (depth > MAX_HEADER_DEPTH) return false;
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return true;
  if (typeof v === 'number') return Number.isFinite(v);
  if (Array.isArray(v)) return v.every((x) => isHeaderValue(x, depth + 1));
  if (typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) return Object.values(v).every((x) => isHeaderValue(x, depth + 1));
  return false;
}

function seconds(name: string, v: unknown): void {
  if (v !== undefined && (typeof v !== 'number' || !Number.isFinite(v) || v <= 0)) throw invalid(name, 'must be a positive number of seconds');
}

/**
 * Check one call's options: unknown names throw `UnknownSendOptionError`,
 * bad values of the options mapped here `ValidationError` naming the option.
 */
export function checkSendOptions(options: SendOptions): void {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) throw invalid('options', 'must be an object');
  // A key set to undefined is an option left out (e.g. spread from a partial object); any set value is checked.
  for (const name of Object.keys(options)) if (!KNOWN.has(name) && (options as Record<string, unknown>)[name] !== undefined) throw new UnknownSendOptionError(name);
  const { retries, headers, replyTo, shadow, compression } = options;
  if (retries !== undefined && (typeof retries !== 'number' || !Number.isSafeInteger(retries) || retries < 0)) throw invalid('retries', 'must be a non-negative integer');
  seconds('timeLimit', options.timeLimit);
  seconds('softTimeLimit', options.softTimeLimit);
  if (shadow !== undefined && (typeof shadow !== 'string' || shadow.length === 0 || shadow.length > 255)) throw invalid('shadow', 'must be a name of 1 to 255 characters');
  if (replyTo !== undefined && (typeof replyTo !== 'string' || replyTo.length === 0 || replyTo.length > 255)) throw invalid('replyTo', 'must be a queue name of 1 to 255 characters');
  if (compression !== undefined && compression !== 'zlib' && compression !== 'gzip') throw invalid('compression', `${JSON.stringify(compression)} is not supported`, "use 'zlib' (or its alias 'gzip')");
  if (headers !== undefined) {
    if (headers === null || typeof headers !== 'object' || Array.isArray(headers)) throw invalid('headers', 'must be an object of header names to values');
    const names = Object.keys(headers);
    if (names.length > MAX_HEADERS) throw invalid('headers', `has ${names.length} headers, more than ${MAX_HEADERS}`);
    for (const name of names) {
      if (name.length === 0 || name.length > 128) throw invalid('headers', `has a header name of ${name.length} characters (1 to 128)`);
      if (STANDARD_HEADERS.has(name) || name === COMPRESSION_HEADER || name.startsWith('celeriac_')) {
        throw invalid('headers', `may not set ${JSON.stringify(name)}: the message's own header of that name is set by Celeriac`, 'use the matching send option (taskId, retries, shadow, timeLimit, compression…) or another header name');
      }
      if (!isHeaderValue(headers[name])) throw invalid('headers', `${JSON.stringify(name)} is not a JSON value (strings, finite numbers, booleans, null, arrays, plain objects)`);
    }
  }
}

/** The message fields of `retries`, `headers` and `replyTo` (options already checked). */
export function messageFieldsOf(options: SendOptions): Pick<TaskMessageInput, 'retries' | 'extraHeaders' | 'replyTo'> {
  const out: Pick<TaskMessageInput, 'retries' | 'extraHeaders' | 'replyTo'> = {};
  if (options.retries !== undefined) out.retries = options.retries;
  if (options.headers !== undefined) out.extraHeaders = { ...options.headers };
  if (options.replyTo !== undefined) out.replyTo = options.replyTo;
  return out;
}
