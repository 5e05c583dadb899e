/**
 * Connection flags shared by commands. URLs on a command line are visible to
 * every user through `ps`, so a flag carrying a password draws a warning:
 * environment variables and *_FILE secret files are the safe way.
 */
import { resolveSecurityMode } from '../config/mode.ts';
import { InsecureConfigError } from '../config/policy.ts';
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

/** Copy URL flags into the environment (read by createApp); a password in them is refused in production, warned about otherwise. */
export function applyConnectionFlags(values: { broker?: string; 'result-backend'?: string }, io: CliIo): void {
  for (const [flag, url, variable] of [
    ['--broker', values.broker, 'CELERIAC_BROKER_URL'],
    ['--result-backend', values['result-backend'], 'CELERIAC_RESULT_BACKEND'],
  ] as const) {
    if (!url) continue;
    if (redactUrl(url) !== url) {
      // A password in argv is in `ps` for every user for the life of the process (issue 20 #11).
      if (resolveSecurityMode(io.env).mode === 'production') {
        throw new InsecureConfigError([{ id: 'CEL-002', setting: flag, message: `${flag} carries a password, which every user of this machine can read with ps`, fix: `put the URL in a secret file and set ${variable}_FILE to its path (or use \${file:…} in ${variable})` }]);
      }
      println(io.stderr, `warning: ${flag} carries a password, which other users can read with ps; use ${variable}_FILE instead (refused in production)`);
    }
    process.env[variable] = url;
  }
}
