/**
 * Structured logging with pino. Every string that reaches a log line goes
 * through `redactAll`, and secret-bearing fields are masked by path.
 *
 * Two formats: `json` (pino's one-object-per-line, what log shippers and
 * tests read) and `text` (one readable line per event: local time, level
 * name, message, then the fields). The default is text when stderr is a
 * terminal and JSON otherwise; `CELERIAC_LOG_FORMAT` or the worker's
 * `--log-format` choose explicitly. Levels accept Celery's names too
 * (`warning`, `critical`).
 */
import pino, { type Logger, type DestinationStream } from 'pino';
import { redactAll, redactValue } from '../config/redact.ts';
import { ConfigError } from '../errors.ts';

export type { Logger };

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';
export type LogFormat = 'json' | 'text';

/** Celery's level names (and Python's) mapped onto pino's. */
const LEVEL_ALIASES: Readonly<Record<string, LogLevel>> = {
  trace: 'trace',
  debug: 'debug',
  info: 'info',
  warn: 'warn',
  warning: 'warn',
  error: 'error',
  critical: 'fatal',
  fatal: 'fatal',
  silent: 'silent',
};

/** Every level name accepted by {@link parseLogLevel}. */
export const LOG_LEVEL_NAMES = Object.keys(LEVEL_ALIASES);

/**
 * A log level from a flag or variable: pino's names, Celery's (`warning`,
 * `critical`), any case. Throws a {@link ConfigError} naming the valid ones.
 */
export function parseLogLevel(value: string, source = 'log level'): LogLevel {
  const level = Object.hasOwn(LEVEL_ALIASES, value.trim().toLowerCase()) ? LEVEL_ALIASES[value.trim().toLowerCase()] : undefined;
  if (!level) {
    throw new ConfigError(`${source} ${JSON.stringify(value)} is not a log level`, { hint: `use one of ${LOG_LEVEL_NAMES.join(', ')}` });
  }
  return level;
}

/** A log format from a flag or variable (`json` or `text`). */
export function parseLogFormat(value: string, source = 'log format'): LogFormat {
  const format = value.trim().toLowerCase();
  if (format !== 'json' && format !== 'text') throw new ConfigError(`${source} ${JSON.stringify(value)} is not a log format`, { hint: 'use json or text' });
  return format;
}

/** The format used when none is asked for: text on a terminal, JSON otherwise. */
export function defaultLogFormat(env: Readonly<Record<string, string | undefined>> = process.env, isTTY = Boolean(process.stderr.isTTY)): LogFormat {
  const asked = env.CELERIAC_LOG_FORMAT;
  if (asked) return parseLogFormat(asked, 'CELERIAC_LOG_FORMAT');
  return isTTY ? 'text' : 'json';
}

/** Paths whose values are never logged, wherever they appear. */
export const REDACT_PATHS = [
  'password', '*.password', 'url', '*.url', 'brokerUrl', '*.brokerUrl', 'resultBackend', '*.resultBackend',
  'secret', '*.secret', 'token', '*.token', 'key', '*.key', 'headers.authorization', '*.headers.authorization',
];

export interface LoggerOptions {
  level?: LogLevel;
  /** Where lines go; default stderr (stdout is kept for command output). */
  destination?: DestinationStream;
  /** Line format; default: `CELERIAC_LOG_FORMAT`, else text on a terminal and JSON otherwise (JSON when a destination is given). */
  format?: LogFormat;
  name?: string;
}

/** Create the process logger. */
export function createLogger(options: LoggerOptions = {}): Logger {
  const envLevel = process.env.CELERIAC_LOG_LEVEL;
  const format = options.format ?? (options.destination && !process.env.CELERIAC_LOG_FORMAT ? 'json' : defaultLogFormat());
  const sink = options.destination ?? pino.destination({ fd: 2, sync: false });
  return pino(
    {
      name: options.name ?? 'celeriac',
      level: options.level ?? (envLevel ? parseLogLevel(envLevel, 'CELERIAC_LOG_LEVEL') : 'info'),
      redact: { paths: REDACT_PATHS, censor: '***' },
      hooks: {
        // Mask URL credentials and registered secrets in messages and string fields.
        logMethod(args, method) {
          method.apply(
            this,
            args.map((a) => (typeof a === 'string' ? redactAll(a) : a instanceof Error ? redactError(a) : a && typeof a === 'object' ? redactObject(a as Record<string, unknown>) : a)) as Parameters<typeof method>,
          );
        },
      },
      serializers: { err: (e: Error) => pino.stdSerializers.err(redactError(e)) },
    },
    format === 'text' ? textDestination(sink, { color: !options.destination && Boolean(process.stderr.isTTY) && !process.env.NO_COLOR }) : sink,
  );
}

function redactError(e: Error): Error {
  const copy = new Error(redactAll(e.message));
  copy.name = e.name;
  if (e.stack) copy.stack = redactAll(e.stack);
  const code = (e as { code?: unknown }).code;
  if (code !== undefined) (copy as { code?: unknown }).code = code;
  return copy;
}

function redactObject(o: Record<string, unknown>): Record<string, unknown> {
  return redactValue(o) as Record<string, unknown>;
}

const LEVEL_LABELS: Readonly<Record<number, string>> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARNING', 50: 'ERROR', 60: 'CRITICAL' };
const LEVEL_COLORS: Readonly<Record<number, string>> = { 10: '90', 20: '90', 30: '32', 40: '33', 50: '31', 60: '35' };
/** Fields every line has, shown in the line's prefix or not at all. */
const FRAME_FIELDS = new Set(['level', 'time', 'pid', 'hostname', 'name', 'msg', 'v']);
/** Policy warnings shown in this process already (one line each per process in text format). */
const shownPolicyWarnings = new Set<string>();

/** `2026-12-04 23:05:01.123` in local time. */
function localTime(ms: number): string {
  const d = new Date(ms);
  const p = (n: number, w = 2): string => String(n).padStart(w, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

function fieldText(v: unknown): string {
  if (typeof v === 'string') return /[\s"=]/.test(v) ? JSON.stringify(v) : v;
  return JSON.stringify(v) ?? String(v);
}

/**
 * One pino JSON line as one readable line: `[time LEVEL/pid] message k=v …`.
 * An error's stack follows on indented lines at error level and above. A
 * policy warning is shortened to its first clause with a pointer to the full
 * text, and shown once per process.
 */
export function formatTextLine(line: string, color = false): string | undefined {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line.endsWith('\n') ? line : `${line}\n`;
  }
  const level = Number(o.level);
  const label = LEVEL_LABELS[level] ?? String(o.level);
  const time = typeof o.time === 'number' ? localTime(o.time) : String(o.time ?? '');
  let msg = String(o.msg ?? '');
  const fields: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) if (!FRAME_FIELDS.has(k) && v !== undefined) fields[k] = v;
  if (o.securityEvent === 'policy_warning') {
    const key = `${String(o.id)}|${String(o.setting)}|${String(o.reason)}`;
    if (shownPolicyWarnings.has(key)) return undefined;
    shownPolicyWarnings.add(key);
    const reason = String(o.reason ?? msg);
    const anchor = typeof o.id === 'string' ? `#${o.id.toLowerCase()}` : '';
    msg = `${typeof o.id === 'string' ? `${o.id} ` : ''}${reason.split(': ')[0]} (full text and fix: --log-format json, or docs/mitigations.md${anchor})`;
    for (const k of Object.keys(fields)) delete fields[k];
  }
  let stack = '';
  const err = fields.err as { type?: string; name?: string; message?: string; stack?: string } | undefined;
  if (err && typeof err === 'object') {
    delete fields.err;
    fields.error = `${err.name ?? err.type ?? 'Error'}: ${err.message ?? ''}`;
    if (level >= 50 && err.stack) stack = `\n${err.stack.split('\n').slice(1).map((l) => `    ${l.trim()}`).join('\n')}`;
  }
  const rest = Object.entries(fields)
    .map(([k, v]) => `${k}=${fieldText(v)}`)
    .join(' ');
  const head = color ? `\x1b[${LEVEL_COLORS[level] ?? '0'}m${label}\x1b[0m` : label;
  return `[${time} ${head}/${String(o.pid ?? '')}] ${msg}${rest ? `  ${rest}` : ''}${stack}\n`;
}

/** A pino destination that writes {@link formatTextLine}'s lines to `sink`. */
function textDestination(sink: DestinationStream, options: { color: boolean }): DestinationStream {
  return {
    write(chunk: string) {
      for (const line of chunk.split('\n')) {
        if (!line) continue;
        const text = formatTextLine(line, options.color);
        if (text !== undefined) sink.write(text);
      }
    },
  };
}

let shared: Logger | undefined;

/** The default process-wide logger. */
export function defaultLogger(): Logger {
  shared ??= createLogger();
  return shared;
}
