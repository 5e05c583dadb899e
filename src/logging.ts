/**
 * Structured logging with pino. Every string that reaches a log line goes
 * through `redactAll`, and secret-bearing fields are masked by path.
 */
import pino, { type Logger, type DestinationStream } from 'pino';
import { redactAll, redactValue } from './config/redact.ts';

export type { Logger };

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';

/** Paths whose values are never logged, wherever they appear. */
export const REDACT_PATHS = [
  'password', '*.password', 'url', '*.url', 'brokerUrl', '*.brokerUrl', 'resultBackend', '*.resultBackend',
  'secret', '*.secret', 'token', '*.token', 'key', '*.key', 'headers.authorization', '*.headers.authorization',
];

export interface LoggerOptions {
  level?: LogLevel;
  /** Where lines go; default stderr (stdout is kept for command output). */
  destination?: DestinationStream;
  name?: string;
}

/** Create the process logger. */
export function createLogger(options: LoggerOptions = {}): Logger {
  return pino(
    {
      name: options.name ?? 'celeriac',
      level: options.level ?? ((process.env.CELERIAC_LOG_LEVEL as LogLevel | undefined) ?? 'info'),
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
    options.destination ?? pino.destination({ fd: 2, sync: false }),
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

let shared: Logger | undefined;

/** The default process-wide logger. */
export function defaultLogger(): Logger {
  shared ??= createLogger();
  return shared;
}
