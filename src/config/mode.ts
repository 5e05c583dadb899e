/**
 * The security mode, resolved in one place for the policy, the message
 * security layer and the app (issue 20 #10).
 *
 * | variable | values | meaning |
 * | --- | --- | --- |
 * | `CELERIAC_ENV` (our own; wins) | `production`, `development` | the mode |
 * | `NODE_ENV` | `production`; `development` or `test` | the mode, when `CELERIAC_ENV` is unset |
 * | neither set | | `production` |
 *
 * Production is the default: the lax mode is only ever the result of an
 * explicit `CELERIAC_ENV=development` or `NODE_ENV=development|test`, so a
 * deployment that forgets to set anything is strict, not open. Any other
 * value of either variable (`Production`, `prod`, `production `, `staging`,
 * …) is refused with a `ConfigError`: a misspelt setting must never be
 * guessed. Every finding that development relaxes names the variable that
 * asked for it.
 */
import { ConfigError } from '../errors.ts';
import type { Env } from './env.ts';

/** `production` (strict) or `development` (loopback services may be insecure, with warnings). */
export type SecurityMode = 'production' | 'development';

/** The mode and what decided it. */
export interface ModeResolution {
  mode: SecurityMode;
  /** The variable that set it, or `default` (production) when neither is set. */
  source: 'CELERIAC_ENV' | 'NODE_ENV' | 'default';
}

const OWN_VALUES: Readonly<Record<string, SecurityMode>> = { production: 'production', development: 'development' };
const NODE_VALUES: Readonly<Record<string, SecurityMode>> = { production: 'production', development: 'development', test: 'development' };

/** Resolve the mode from the environment; throws `ConfigError` (`ERR_MODE`) for a value outside the sets above. */
export function resolveSecurityMode(env: Env): ModeResolution {
  const own = env.CELERIAC_ENV;
  if (own !== undefined && own !== '') {
    const mode = Object.hasOwn(OWN_VALUES, own) ? OWN_VALUES[own] : undefined;
    if (!mode) {
      throw new ConfigError(`CELERIAC_ENV=${JSON.stringify(own)} is neither "production" nor "development": refusing to guess the security mode`, {
        hint: 'set CELERIAC_ENV=production (or development), exactly, in lower case',
        code: 'ERR_MODE',
      });
    }
    return { mode, source: 'CELERIAC_ENV' };
  }
  const node = env.NODE_ENV;
  // Neither variable: strict. Development must be asked for (see the table above).
  if (node === undefined || node === '') return { mode: 'production', source: 'default' };
  const mode = Object.hasOwn(NODE_VALUES, node) ? NODE_VALUES[node] : undefined;
  if (!mode) {
    throw new ConfigError(`NODE_ENV=${JSON.stringify(node)} is not "production", "development" or "test": refusing to guess the security mode`, {
      hint: 'set NODE_ENV=production exactly (lower case, no spaces), or set CELERIAC_ENV=production|development, which wins over NODE_ENV',
      code: 'ERR_MODE',
    });
  }
  return { mode, source: 'NODE_ENV' };
}

/** True when {@link resolveSecurityMode} says production. */
export function isProduction(env: Env): boolean {
  return resolveSecurityMode(env).mode === 'production';
}
