/**
 * ioredis clients for the Redis broker and backend, built from a URL and
 * the app settings. RESP2 is used throughout: it works on every Redis
 * version and delivers client-tracking invalidations as pub/sub messages.
 */
import { Redis, type RedisOptions } from 'ioredis';
import type { ResolvedSettings } from '../../config/options.ts';
import { parseConnectionUrls } from '../../config/url.ts';
import { redisHaOptions } from '../../config/ha-settings.ts';
import { CeleriacError, ConfigError, ConnectionError } from '../../errors.ts';
import type { Logger } from '../../observability/logging.ts';
import { redisTlsOptions } from './tls.ts';
import { classifyConnectionError, recordSecurityEvent, type ConnectionErrorClass } from '../../observability/security-events.ts';

export interface RedisClientOptions {
  url: string;
  settings: ResolvedSettings;
  logger: Logger;
  /** Shown in CLIENT LIST and logs: `broker`, `notifier`, `backend`, … */
  role: string;
  /** Which TLS settings apply: the broker's (`brokerUseSsl`) or the backend's (`redisBackendUseSsl`). */
  side: 'broker' | 'backend';
  /**
   * ioredis's auto-pipelining: commands of one tick wait for `setImmediate`
   * and go out as one write (default false). Our adapters batch their hot
   * commands themselves (coalesced LPUSH, reserve, ack, store and replay
   * scripts per turn), so it only added a deferred write and an ioredis
   * Pipeline per batch (measured in bench/README.md).
   */
  autoPipelining?: boolean;
  /** Re-subscribe to channels after a reconnect (default true); off for connections that subscribe themselves on 'ready'. */
  autoResubscribe?: boolean;
  /**
   * Re-send commands that were written but not answered when the connection
   * dropped (ioredis's default, true). Off for the connection that sends
   * tasks: a re-sent LPUSH stores the message twice if the first one had
   * landed; the broker verifies such sends itself instead.
   */
  autoResend?: boolean;
}

/** Parsed facts of a redis:// or rediss:// URL. */
export interface RedisTarget {
  host: string;
  port: number;
  db: number;
  username: string | undefined;
  password: string | undefined;
  tls: boolean;
  /** `sentinel://` URLs: the sentinels to ask for the primary (host and port above are the first one's). */
  sentinels?: Array<{ host: string; port: number }>;
}

/**
 * Parse a Redis URL (`redis://[user[:password]@]host[:port][/db]`, `rediss://` for TLS)
 * with the one parser the security policy uses (`parseConnectionUrl`), so the
 * credentials checked at start are the credentials sent.
 */
export function parseRedisUrl(url: string): RedisTarget {
  const all = parseConnectionUrls(url);
  const u = all[0]!;
  if (u.kind !== 'redis') throw new ConfigError(`not a Redis URL: ${u.redacted}`, { hint: 'expected redis://[user:password@]host[:port][/db], rediss://… or sentinel://host:26379;sentinel://…' });
  return {
    host: u.host,
    port: u.port ?? 6379,
    db: u.db ?? 0,
    username: u.username,
    password: u.password,
    tls: all.some((x) => x.tls),
    ...(u.scheme === 'sentinel' ? { sentinels: all.map((x) => ({ host: x.host, port: x.port ?? 26379 })) } : {}),
  };
}

/** How a target is named in messages: `host:port`, or the primary and its sentinels. */
export function describeTarget(t: RedisTarget, masterName?: string): string {
  if (!t.sentinels) return `${t.host}:${t.port}`;
  return `primary ${JSON.stringify(masterName ?? '?')} via sentinels ${t.sentinels.map((x) => `${x.host}:${x.port}`).join(',')}`;
}

/**
 * ioredis options that reach the primary through Redis Sentinel: the
 * sentinels of the URL list, the primary named by `master_name`, the
 * sentinels' own login (`sentinel_kwargs`) and TLS towards both the
 * sentinels and the servers when the URL or `brokerUseSsl` asks for it.
 */
function sentinelOptions(target: RedisTarget, options: RedisClientOptions, tls: ReturnType<typeof redisTlsOptions>): Partial<RedisOptions> {
  const ha = redisHaOptions(options.settings, options.side);
  const setting = options.side === 'broker' ? 'brokerTransportOptions' : 'resultBackendTransportOptions';
  if (ha.masterName === undefined) {
    throw new ConfigError(`a sentinel:// ${options.side === 'broker' ? 'broker' : 'result backend'} URL needs ${setting}.master_name`, {
      hint: `set ${setting}: { master_name: 'mymaster' } to the name the sentinels monitor (sentinel monitor <name> …)`,
    });
  }
  return {
    sentinels: target.sentinels!,
    name: ha.masterName,
    role: 'master',
    sentinelUsername: ha.sentinelUsername,
    sentinelPassword: ha.sentinelPassword,
    // No failover detector: its sentinel subscriptions outlive disconnect() in ioredis 6 (they kept reconnecting
    // after close); a dead primary breaks the connection anyway and a demoted one answers READONLY (below).
    failoverDetector: false,
    // Sentinels answer with addresses; a failover on the way keeps being asked with backoff.
    sentinelRetryStrategy: (times: number) => Math.min(100 * times, 1000),
    ...(tls ? { tls, enableTLSForSentinelMode: true, sentinelTLS: tls } : {}),
    // A demoted primary answers writes with READONLY: reconnect (the sentinels name the new one) and re-send —
    // a refused write was not done, so re-sending it cannot store it twice.
    reconnectOnError: (err: Error) => (err.message.startsWith('READONLY') ? 2 : false),
  };
}

/** Clients whose first connection is made by `connectClient`: not retried in the background when it fails. */
const failFast = new WeakSet<Redis>();
/** Connection timeout of each client, ms (from `brokerConnectionTimeout`). */
const connectTimeouts = new WeakMap<Redis, number>();

/** Longest a first connection (TCP, TLS handshake, AUTH, ready check) may take before it is given up. */
export const CONNECT_TIMEOUT_MS = 10_000;

function connectTimeoutMs(settings: ResolvedSettings): number {
  const s = settings.connection.brokerConnectionTimeout;
  return typeof s === 'number' && Number.isFinite(s) && s > 0 ? s * 1000 : CONNECT_TIMEOUT_MS;
}

/**
 * `classifyConnectionError`, plus what only the Redis client knows: a TLS
 * connection that the server resets before it is ready has passed the
 * handshake but been refused by the server — with TLS 1.3 that is how a
 * missing or untrusted client certificate shows.
 */
function classifyRedisError(err: unknown, tls: boolean, handshaking: boolean): ConnectionErrorClass {
  const c = classifyConnectionError(err);
  if (tls && handshaking && c.kind === 'network' && (c.code === 'ECONNRESET' || c.code === 'EPIPE')) {
    return {
      kind: 'tls',
      reason: 'the server closed the TLS connection before it was ready (it requires a client certificate, or rejected ours)',
      hint: 'set ssl_certfile and ssl_keyfile to a client certificate signed by a CA the server trusts',
      code: c.code,
    };
  }
  return c;
}

/** Create an ioredis client (not yet connected: call `connect()`). */
export function createRedisClient(options: RedisClientOptions): Redis {
  const target = parseRedisUrl(options.url);
  const tls = redisTlsOptions(target.sentinels ? options.url.split(';')[0]! : options.url, options.settings, options.side);
  let everReady = false;
  const timeoutMs = connectTimeoutMs(options.settings);
  const ioOptions: RedisOptions = {
    host: target.host,
    port: target.port,
    db: target.db,
    username: target.username,
    password: target.password,
    lazyConnect: true,
    protocol: 2,
    enableAutoPipelining: options.autoPipelining ?? false,
    autoResubscribe: options.autoResubscribe ?? true,
    autoResendUnfulfilledCommands: options.autoResend ?? true,
    connectionName: `celeriac:${options.role}`,
    maxRetriesPerRequest: 20,
    // connectClient's own deadline (the same setting) comes first and reports the cause.
    connectTimeout: timeoutMs + 1000,
    // Reconnect with backoff; but a first connection made through connectClient that fails is
    // reported by it instead of being retried in the background.
    retryStrategy: (times) => (!everReady && failFast.has(client) ? null : Math.min(50 * 2 ** Math.min(times, 6), 2000)),
    ...(tls ? { tls } : {}),
    ...(target.sentinels ? sentinelOptions(target, options, tls) : {}),
  };
  const client = new Redis(ioOptions);
  connectTimeouts.set(client, timeoutMs);
  const host = describeTarget(target, target.sentinels ? redisHaOptions(options.settings, options.side).masterName : undefined);
  let lost = false;
  client.on('ready', () => {
    if (everReady && lost) options.logger.info({ role: options.role, host }, `redis ${options.role} connection to ${host} reconnected`);
    everReady = true;
    lost = false;
  });
  let lastLogged = '';
  let lastAt = 0;
  client.on('error', (err: Error) => {
    // ioredis retries every few ms while a server is down: log each distinct error at most every 10 s.
    const now = Date.now();
    if (err.message === lastLogged && now - lastAt < 10_000) return;
    lastLogged = err.message;
    lastAt = now;
    const c = classifyRedisError(err, tls !== undefined, client.status !== 'ready');
    if (c.kind === 'auth' || c.kind === 'tls') {
      recordSecurityEvent(c.kind === 'auth' ? 'auth_failure' : 'tls_failure', { host, reason: c.reason, code: c.code, role: options.role }, options.logger);
    }
    if (everReady && c.kind === 'network') {
      // A connection that worked before: the server restarted or the network blinked. Set-up hints do not apply.
      lost = true;
      options.logger.warn({ role: options.role, host, code: c.code }, `redis ${options.role} connection to ${host} lost: ${c.reason}; reconnecting`);
      return;
    }
    options.logger.warn({ role: options.role, host, code: c.code }, `redis ${options.role} connection to ${host} failed: ${c.reason} — ${c.hint}`);
  });
  client.on('close', () => {
    if (everReady) lost = true;
  });
  return client;
}

/** Key of a Redis target for sharing connections: same server and db. */
export function targetKey(t: RedisTarget): string {
  return `${t.tls ? 's' : ''}${t.host}:${t.port}/${t.db}`;
}

/**
 * Connect, turning a failure into a `ConnectionError` that names the host
 * and the reason (code `ERR_AUTH`, `ERR_TLS`, `ERR_CONNECTION` or
 * `ERR_CONNECTION_TIMEOUT`) and says what to do (never the password).
 *
 * ioredis rejects `connect()` with a bare "Connection is closed." and
 * reports the real cause (WRONGPASS, a certificate error, …) on its
 * `error` event, so the first error seen during the attempt is the one
 * classified. A failed first attempt is not retried in the background
 * (that would keep a failed process alive, retrying a wrong password or a
 * bad certificate forever): calling again retries.
 */
export async function connectClient(client: Redis, url: string, role: string, timeoutMs: number = connectTimeouts.get(client) ?? CONNECT_TIMEOUT_MS): Promise<void> {
  let cause: unknown;
  const onError = (err: unknown): void => {
    cause ??= err;
  };
  client.on('error', onError);
  failFast.add(client);
  const tls = client.options.tls !== undefined;
  let timer: NodeJS.Timeout | undefined;
  const connecting = client.connect();
  try {
    const timedOut = await Promise.race([
      connecting.then(() => false),
      new Promise<true>((resolve) => {
        timer = setTimeout(() => resolve(true), timeoutMs);
      }),
    ]);
    if (timedOut) {
      connecting.catch(() => undefined);
      client.disconnect();
      const t = parseRedisUrl(url);
      const hint = cause !== undefined ? classifyRedisError(cause, tls, true).hint
        : tls ? 'the TLS handshake got no answer: check that the port speaks TLS (a plaintext port needs redis://), host, port and firewalls'
          : 'check host, port and firewalls; a TLS port needs rediss://';
      throw new ConnectionError(`cannot connect the redis ${role} to ${describeTarget(t, client.options.name)}: no answer within ${timeoutMs / 1000} s`, { hint, code: 'ERR_CONNECTION_TIMEOUT' });
    }
  } catch (err) {
    if (err instanceof ConnectionError) throw err;
    // createRedisClient does not retry a first connection, so the client has ended: calling again retries.
    if (client.status !== 'end') client.disconnect();
    const t = parseRedisUrl(url);
    const c = classifyRedisError(cause ?? err, tls, true);
    throw new ConnectionError(`cannot connect the redis ${role} to ${describeTarget(t, client.options.name)}: ${c.reason}`, { hint: c.hint, code: c.kind === 'auth' ? 'ERR_AUTH' : c.kind === 'tls' ? 'ERR_TLS' : 'ERR_CONNECTION' });
  } finally {
    clearTimeout(timer);
    client.off('error', onError);
    failFast.delete(client);
  }
}

/**
 * Switch a client to the credentials of `url` (same host): later reconnects
 * use them, and a connected client re-authenticates first, so a wrong new
 * secret is reported now (`ConnectionError` `ERR_AUTH`, an `auth_failure`
 * event) and the working credentials are kept — the connection stays
 * authenticated as before and reconnects keep using them.
 */
export async function updateClientCredentials(client: Redis, url: string): Promise<void> {
  const t = parseRedisUrl(url);
  const current = client.options;
  const sameSentinels = t.sentinels !== undefined && JSON.stringify(t.sentinels) === JSON.stringify(current.sentinels);
  if (!sameSentinels && (t.host !== current.host || t.port !== current.port)) {
    throw new ConfigError('a credential reload may change the user and password, not the server', { hint: 'restart the process to move to another server' });
  }
  // Take the new secret before checking it: a reconnect during the check (the operator killing the old
  // sessions right after SIGHUP) must log in with the new secret, not the retired one.
  const previous = { username: current.username, password: current.password };
  current.username = t.username;
  current.password = t.password;
  if (client.status === 'ready' && t.password !== undefined && client.mode !== 'subscriber') {
    // (RESP2 subscribers cannot AUTH; they use the new secret on their next reconnect.)
    try {
      if (t.username) await client.auth(t.username, t.password);
      else await client.auth(t.password);
    } catch (err) {
      const c = classifyConnectionError(err);
      // The connection dropped under the check: its reconnect authenticates with the new secret and reports a wrong one.
      if (c.kind !== 'auth') return;
      current.username = previous.username;
      current.password = previous.password;
      recordSecurityEvent('auth_failure', { host: `${t.host}:${t.port}`, reason: `${c.reason} (new credentials not taken)`, code: c.code });
      throw new ConnectionError(`the new credentials for ${t.host}:${t.port} were refused: ${c.reason}; the current ones are kept`, { hint: c.hint, code: 'ERR_AUTH' });
    }
  }
}

/**
 * An error of a command on an established client, as users should see it:
 * a connection failure (ioredis's "Connection is closed.", its
 * MaxRetriesPerRequestError during a long outage, a reset) becomes a
 * `ConnectionError` naming the engine, role and host; anything else (a
 * Celeriac error, a Redis reply error) is returned unchanged.
 */
export function asRedisConnectionError(err: unknown, role: string, url: string): unknown {
  if (err instanceof CeleriacError || !(err instanceof Error)) return err;
  const code = (err as { code?: string }).code;
  const isConnection = err.name === 'MaxRetriesPerRequestError' || err.message === 'Connection is closed.' || /^(ECONN|EPIPE|ETIMEDOUT|EHOSTUNREACH|ENOTFOUND)/.test(code ?? '');
  if (!isConnection) return err;
  const t = parseRedisUrl(url);
  return new ConnectionError(`the redis ${role} at ${describeTarget(t)} is unreachable: ${err.message}`, {
    hint: 'the server is down or restarting; Celeriac keeps reconnecting — retry the call, or check that the server runs',
    code: 'ERR_CONNECTION',
    cause: err,
  });
}
