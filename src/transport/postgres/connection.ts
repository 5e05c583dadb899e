/**
 * Connections of the PostgreSQL engine: a `pg` pool per adapter, built
 * from the URL (TLS from `config/tls.ts`, so `sslmode=verify-full` is
 * checked exactly as the policy reads it), and a client that refuses,
 * during the handshake, every authentication the policy does not accept:
 * md5 and cleartext passwords, and a server that asks for nothing (trust).
 * The rule itself is the pure `evaluatePostgresAuth` of `config/policy.ts`;
 * this file only tells it what the server asked for.
 *
 * URL: `postgres[ql]://user:password@host:5432/db?sslmode=verify-full&sslrootcert=/ca.pem`,
 * plus `?schema=<name>` (default `celeriac`): the schema of the engine's
 * tables (the replay nonces live in `<schema>_replay`).
 */
import type { ConnectionOptions } from 'node:tls';
import pg from 'pg';
import type { ResolvedSettings } from '../../config/options.ts';
import { evaluatePostgresAuth, InsecureConfigError, policyInputFromSettings, type PolicyReport, type PostgresAuthMethod } from '../../config/policy.ts';
import { tlsOptionsFor } from '../../config/tls.ts';
import { parseConnectionUrl, type ConnectionUrl } from '../../config/url.ts';
import { ConfigError } from '../../errors.ts';
import type { Logger } from '../../observability/logging.ts';
import { recordPolicyWarning } from '../../observability/policy-events.ts';

/** Which setting a connection serves (names the policy's findings and picks the TLS setting). */
export type PgSide = 'broker' | 'backend';

/** Everything a pool needs, resolved once from the URL and the settings. */
export interface PgTarget {
  url: string;
  parsed: ConnectionUrl;
  /** Schema of the engine's tables (validated identifier). */
  schema: string;
  side: PgSide;
  settings: ResolvedSettings;
  logger: Logger;
  tls: ConnectionOptions | undefined;
}

const IDENT = /^[a-z_][a-z0-9_]{0,40}$/;

/** Resolve a URL into a connection target (throws `ConfigError` for a bad URL, schema or TLS setting). */
export function pgTarget(url: string, side: PgSide, settings: ResolvedSettings, logger: Logger): PgTarget {
  const parsed = parseConnectionUrl(url);
  if (parsed.kind !== 'postgres') throw new ConfigError(`${parsed.redacted} is not a PostgreSQL URL`, { hint: 'use postgres://user:password@host:5432/db?sslmode=verify-full' });
  const schema = parsed.params.schema ?? 'celeriac';
  if (!IDENT.test(schema)) {
    throw new ConfigError(`schema ${JSON.stringify(schema)} in ${parsed.redacted} is not a plain lower-case identifier`, { hint: 'use letters, digits and _ (at most 41 characters), starting with a letter or _' });
  }
  const unsafe = policyInputFromSettings(settings).unsafe;
  // Only the broker has a TLS setting besides the URL (`brokerUseSsl`); the backend's TLS is its URL's.
  const tls = tlsOptionsFor(parsed, side === 'broker' ? settings.tls.brokerUseSsl : undefined, { unsafeAllowInsecureTls: unsafe?.unsafeAllowInsecureTls === true, setting: side === 'broker' ? 'brokerUseSsl' : 'resultBackend' });
  return { url, parsed, schema, side, settings, logger, tls };
}

/** The `pg` client options of a target (user and password from the URL). */
function clientConfig(t: PgTarget, role: string): pg.ClientConfig {
  const u = t.parsed;
  return {
    host: u.host,
    port: u.port ?? 5432,
    user: u.username,
    password: u.password ?? '',
    database: u.database,
    ssl: t.tls ?? false,
    application_name: `celeriac:${role}`,
    connectionTimeoutMillis: 10_000,
    keepAlive: true,
  };
}

/** Policy warnings already logged, per URL and method (a pool connects many times; one line is enough). */
const warned = new Set<string>();

/**
 * A `pg` client that judges the server's authentication request before
 * answering it: md5 and cleartext requests are refused before any password
 * is sent, and an `AuthenticationOk` with no request before it (trust) is
 * refused before the first query. Refusals are `InsecureConfigError`s.
 */
function policedClientClass(t: PgTarget): typeof pg.Client {
  const input = policyInputFromSettings(t.settings);
  const setting = t.side === 'broker' ? 'brokerUrl' : 'resultBackend';
  const clientCertificate = t.tls?.cert !== undefined && t.tls.rejectUnauthorized !== false;
  const judge = (method: PostgresAuthMethod): Error | undefined => {
    const report: PolicyReport = evaluatePostgresAuth({ setting, url: t.url, method, clientCertificate, mode: input.mode, modeSource: input.modeSource, unsafe: input.unsafe });
    if (report.refusals.length > 0) return new InsecureConfigError(report.refusals);
    for (const w of report.warnings) {
      const key = `${t.parsed.redacted}|${method}`;
      if (warned.has(key)) continue;
      warned.add(key);
      recordPolicyWarning(w, t.logger);
    }
    return undefined;
  };
  // pg's handshake handlers (`_handleAuth…`) are methods bound at connect; overriding them is the
  // one place where the request can be refused before the password leaves this process.
  class PolicedClient extends pg.Client {
    private challenged = false;
    private refuse(err: Error): void {
      const con = (this as unknown as { connection: { emit(e: string, err: Error): void; stream: { destroy(): void } } }).connection;
      con.emit('error', err);
      con.stream.destroy();
    }
    _handleAuthCleartextPassword(msg: unknown): void {
      this.challenged = true;
      const err = judge('password');
      if (err) return this.refuse(err);
      (pg.Client.prototype as unknown as { _handleAuthCleartextPassword(m: unknown): void })._handleAuthCleartextPassword.call(this, msg);
    }
    _handleAuthMD5Password(msg: unknown): void {
      this.challenged = true;
      const err = judge('md5');
      if (err) return this.refuse(err);
      (pg.Client.prototype as unknown as { _handleAuthMD5Password(m: unknown): void })._handleAuthMD5Password.call(this, msg);
    }
    _handleAuthSASL(msg: unknown): void {
      this.challenged = true;
      (pg.Client.prototype as unknown as { _handleAuthSASL(m: unknown): void })._handleAuthSASL.call(this, msg);
    }
    _attachListeners(con: { on(e: string, f: () => void): void }): void {
      (pg.Client.prototype as unknown as { _attachListeners(c: unknown): void })._attachListeners.call(this, con);
      con.on('authenticationOk', () => {
        if (this.challenged) return;
        const err = judge('none');
        if (err) this.refuse(err);
      });
    }
  }
  return PolicedClient as unknown as typeof pg.Client;
}

/**
 * Open a pool on a target (connections are made on first use). Idle
 * connections' errors (a server restart) are logged, not thrown: the pool
 * replaces them.
 */
export function openPool(t: PgTarget, role: string, max: number): pg.Pool {
  const pool = new pg.Pool({ ...clientConfig(t, role), max, idleTimeoutMillis: 30_000, Client: policedClientClass(t) });
  pool.on('error', (err) => t.logger.warn({ err: err.message, role }, 'an idle PostgreSQL connection failed; the pool replaces it'));
  return pool;
}

/** A single client on a target (the LISTEN connections), policed like the pool's. */
export function newClient(t: PgTarget, role: string): pg.Client {
  const Client = policedClientClass(t);
  return new Client(clientConfig(t, role));
}

/**
 * Switch a pool to the credentials of `url` (same server): one connection
 * with them is opened first, so a refused password keeps the old ones.
 */
export async function updatePoolCredentials(pool: pg.Pool, t: PgTarget, url: string): Promise<PgTarget> {
  const next = pgTarget(url, t.side, t.settings, t.logger);
  if (next.parsed.host !== t.parsed.host || next.parsed.port !== t.parsed.port || next.parsed.database !== t.parsed.database) {
    throw new ConfigError(`new credentials must name the same server and database (${t.parsed.redacted})`, { hint: 'restart the process to move to another server' });
  }
  const probe = newClient(next, 'credential-check');
  await probe.connect();
  await probe.end();
  const o = (pool as unknown as { options: pg.PoolConfig }).options;
  o.user = next.parsed.username;
  o.password = next.parsed.password ?? '';
  return next;
}

/** Quote an identifier validated by `pgTarget` (kept for readability at call sites). */
/** Run `fn` in one transaction on a pooled connection: committed when it resolves, rolled back when it throws. */
export async function inTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const out = await fn(client);
    await client.query('COMMIT');
    return out;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

export function ident(name: string): string {
  return `"${name}"`;
}

/** The server's clock in epoch ms, as SQL: leases and expiry use one clock whatever the clients' clocks say. */
export const NOW_MS = `(extract(epoch from clock_timestamp()) * 1000)::bigint`;
