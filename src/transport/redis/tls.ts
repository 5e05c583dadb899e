/**
 * TLS options for Redis connections, from the URL's Celery-style
 * parameters and `brokerUseSsl` / `redisBackendUseSsl` (the config layer
 * does the reading and the refusing).
 */
import type { ConnectionOptions } from 'node:tls';
import type { ResolvedSettings } from '../../config/options.ts';
import { policyInputFromSettings } from '../../config/policy.ts';
import { tlsOptionsFor } from '../../config/tls.ts';
import { parseConnectionUrl } from '../../config/url.ts';

export function redisTlsOptions(url: string, settings: ResolvedSettings, side: 'broker' | 'backend'): ConnectionOptions | undefined {
  const setting = side === 'broker' ? 'brokerUseSsl' : 'redisBackendUseSsl';
  const unsafe = policyInputFromSettings(settings).unsafe;
  return tlsOptionsFor(parseConnectionUrl(url), settings.tls[setting], { unsafeAllowInsecureTls: unsafe?.unsafeAllowInsecureTls === true, setting });
}
