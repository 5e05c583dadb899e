/**
 * ioredis clients for the Redis broker and backend, built from a URL and
 * the app settings. RESP2 is used throughout: it works on every Redis
 * version and delivers client-tracking invalidations as pub/sub messages.
 */
import { Redis, type RedisOptions } from 'ioredis';
import type { ResolvedSettings } from '../config/options.ts';
import { redactUrl } from '../config/redact.ts';
import { ConfigError } from '../errors.ts';
import type { Logger } from '../logging.ts';
import { redisTlsOptions } from './tls.ts';

export interface RedisClientOptions {
  url: string;
  settings: ResolvedSettings;
  logger: Logger;
  /** Shown in CLIENT LIST and logs: `broker`, `notifier`, `backend`, … */
  role: string;
  /** Which TLS settings apply: the broker's (`brokerUseSsl`) or the backend's (`redisBackendUseSsl`). */
  side: 'broker' | 'backend';
  /** Batch commands issued in the same tick into one write (default true). */
  autoPipelining?: boolean;
}

/** Parsed facts of a redis:// or rediss:// URL. */
export interface RedisTarget {
  host: string;
  port: number;
  db: number;
  username: string | undefined;
  password: string | undefined;
  tls: boolean;
}

/** Parse a Redis URL (`redis://[user[:password]@]host[:port][/db]`, `rediss://` for TLS). */
export function parseRedisUrl(url: string): RedisTarget {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new ConfigError(`invalid Redis URL ${redactUrl(url)}`, { hint: 'expected redis://[user:password@]host[:port][/db] or rediss://…' });
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new ConfigError(`not a Redis URL: ${redactUrl(url)}`);
  const dbText = u.pathname.replace(/^\//, '') || u.searchParams.get('db') || '0';
  const db = Number(dbText);
  if (!Number.isInteger(db) || db < 0) throw new ConfigError(`invalid Redis database ${JSON.stringify(dbText)} in ${redactUrl(url)}`);
  const dec = (s: string): string | undefined => (s ? decodeURIComponent(s) : undefined);
  return {
    host: u.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1',
    port: u.port ? Number(u.port) : 6379,
    db,
    username: dec(u.username),
    password: dec(u.password),
    tls: u.protocol === 'rediss:',
  };
}

/** Create an ioredis client (not yet connected: call `connect()`). */
export function createRedisClient(options: RedisClientOptions): Redis {
  const target = parseRedisUrl(options.url);
  const tls = redisTlsOptions(options.url, target, options.settings, options.side);
  const ioOptions: RedisOptions = {
    host: target.host,
    port: target.port,
    db: target.db,
    username: target.username,
    password: target.password,
    lazyConnect: true,
    protocol: 2,
    enableAutoPipelining: options.autoPipelining ?? true,
    connectionName: `celeriac:${options.role}`,
    maxRetriesPerRequest: 20,
    retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 6), 2000),
    ...(tls ? { tls } : {}),
  };
  const client = new Redis(ioOptions);
  let lastLogged = '';
  let lastAt = 0;
  client.on('error', (err: Error) => {
    // ioredis retries every few ms while a server is down: log each distinct error at most every 10 s.
    const now = Date.now();
    if (err.message !== lastLogged || now - lastAt > 10_000) {
      lastLogged = err.message;
      lastAt = now;
      options.logger.warn({ err, role: options.role, host: target.host, port: target.port }, `redis ${options.role} connection error: ${err.message}`);
    }
  });
  return client;
}

/** Key of a Redis target for sharing connections: same server and db. */
export function targetKey(t: RedisTarget): string {
  return `${t.tls ? 's' : ''}${t.host}:${t.port}/${t.db}`;
}
