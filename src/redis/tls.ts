/**
 * TLS options for Redis connections. Verification is always on; the full
 * Celery-style settings (CA files, client certificates, ssl_cert_reqs) are
 * read by the config layer.
 */
import type { ConnectionOptions } from 'node:tls';
import type { ResolvedSettings } from '../config/options.ts';
import type { RedisTarget } from './connection.ts';

export function redisTlsOptions(_url: string, target: RedisTarget, _settings: ResolvedSettings, _side: 'broker' | 'backend'): ConnectionOptions | undefined {
  if (!target.tls) return undefined;
  return { servername: target.host, minVersion: 'TLSv1.2', rejectUnauthorized: true };
}
