/**
 * ioredis clients for the Redis broker and backend, built from a URL and
 * the app settings. RESP2 is used throughout: it works on every Redis
 * version and delivers client-tracking invalidations as pub/sub messages.
 */
import { Redis, type RedisOptions } from 'ioredis';
import type { ResolvedSettings } from '../config/options.ts';
import { redactUrl } from '../config/redact.ts';
import { ConfigError, ConnectionError } from '../errors.ts';
import type { Logger } from '../logging.ts';
import { redisTlsOptions } from './tls.ts';
import { classifyConnectionError, recordSecurityEvent } from '../security/events.ts';

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
  const tls = redisTlsOptions(options.url, options.settings, options.side);
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
    if (err.message === lastLogged && now - lastAt < 10_000) return;
    lastLogged = err.message;
    lastAt = now;
    const c = classifyConnectionError(err);
    const host = `${target.host}:${target.port}`;
    if (c.kind === 'auth' || c.kind === 'tls') {
      recordSecurityEvent(c.kind === 'auth' ? 'auth_failure' : 'tls_failure', { host, reason: c.reason, code: c.code, role: options.role }, options.logger);
    }
    options.logger.warn({ role: options.role, host, code: c.code }, `redis ${options.role} connection to ${host} failed: ${c.reason} — ${c.hint}`);
  });
  return client;
}

/** Key of a Redis target for sharing connections: same server and db. */
export function targetKey(t: RedisTarget): string {
  return `${t.tls ? 's' : ''}${t.host}:${t.port}/${t.db}`;
}

/**
 * Connect, turning a failure into a `ConnectionError` that names the host
 * and says what to do (never the password).
 */
export async function connectClient(client: Redis, url: string, role: string): Promise<void> {
  try {
    await client.connect();
  } catch (err) {
    const t = parseRedisUrl(url);
    const c = classifyConnectionError(err);
    throw new ConnectionError(`cannot connect the redis ${role} to ${t.host}:${t.port}: ${c.reason}`, { hint: c.hint, code: c.kind === 'auth' ? 'ERR_AUTH' : c.kind === 'tls' ? 'ERR_TLS' : 'ERR_CONNECTION' });
  }
}

/**
 * Switch a client to the credentials of `url` (same host): later reconnects
 * use them, and a connected client re-authenticates at once so a wrong new
 * secret is reported now rather than at the next reconnect.
 */
export async function updateClientCredentials(client: Redis, url: string): Promise<void> {
  const t = parseRedisUrl(url);
  const current = client.options;
  if (t.host !== current.host || t.port !== current.port) {
    throw new ConfigError('a credential reload may change the user and password, not the server', { hint: 'restart the process to move to another server' });
  }
  current.username = t.username;
  current.password = t.password;
  if (client.status === 'ready' && t.password !== undefined) {
    if (client.mode === 'subscriber') return; // RESP2 subscribers cannot AUTH; they use the new secret on reconnect.
    if (t.username) await client.auth(t.username, t.password);
    else await client.auth(t.password);
  }
}
