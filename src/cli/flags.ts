/**
 * Connection flags shared by commands. URLs on a command line are visible to
 * every user through `ps`, so a flag carrying a password draws a warning:
 * environment variables and *_FILE secret files are the safe way.
 */
import { redactUrl } from '../config/redact.ts';
import { println, type CliIo } from './io.ts';

export const CONNECTION_FLAGS = {
  broker: { type: 'string', short: 'b' },
  'result-backend': { type: 'string' },
} as const;

export const CONNECTION_HELP = `  -b, --broker <url>            broker URL (default: $CELERIAC_BROKER_URL,
                                $CELERY_BROKER_URL, or their _FILE variants)
      --result-backend <url>    result backend URL (default: $CELERIAC_RESULT_BACKEND,
                                $CELERY_RESULT_BACKEND, or their _FILE variants)`;

/** Copy URL flags into the environment (read by createApp), warning when they hold a password. */
export function applyConnectionFlags(values: { broker?: string; 'result-backend'?: string }, io: CliIo): void {
  for (const [flag, url, variable] of [
    ['--broker', values.broker, 'CELERIAC_BROKER_URL'],
    ['--result-backend', values['result-backend'], 'CELERIAC_RESULT_BACKEND'],
  ] as const) {
    if (!url) continue;
    if (redactUrl(url) !== url) {
      println(io.stderr, `warning: ${flag} carries a password, which other users can read with ps; use ${variable}_FILE instead`);
    }
    process.env[variable] = url;
  }
}
