/**
 * Connection URL parsing for every broker and backend Celeriac speaks.
 *
 * One parser, so that the policy, the TLS builder, the adapters and
 * `celeriac audit` agree on what a URL means. Errors name the scheme, the
 * host and what is wrong, never the password (messages go through
 * `redactUrl`).
 *
 * Accepted forms:
 *
 * | scheme | form | notes |
 * | --- | --- | --- |
 * | `redis`, `rediss` | `redis://[user[:password]@]host[:port][/db][?params]` | db defaults to 0; `rediss` = TLS; also `?db=N` |
 * | `sentinel` | `sentinel://[user[:password]@]host[:port][/db][;sentinel://host2[:port]…]` | Redis Sentinel (port 26379); a `;` list goes through `parseConnectionUrls`; TLS with `?ssl=true` or `brokerUseSsl` |
 * | `amqp`, `amqps`, `pyamqp` | `amqp://[user:password@]host[:port][/vhost][?params]` | vhost is the percent-decoded path without its first `/`; Celery's `//` (and `/%2F`) mean vhost `/`; empty means `/` |
 * | `postgres`, `postgresql` | `postgres://[user:password@]host[:port][/database][?sslmode=…]` | TLS when `sslmode` is `require`, `verify-ca` or `verify-full`; also SQLAlchemy's `db+postgresql+driver://` |
 * | `sqlite` | `sqlite:///abs/path.db` (absolute) or `sqlite://relative/path.db` (relative to the working directory) | everything after `sqlite://` is the path; `sqlite://` alone = the adapter's default file. SQLAlchemy's `db+sqlite:///rel.db` / `db+sqlite:////abs.db` keep SQLAlchemy's meaning |
 * | `memory` | `memory://[name]` | in-process, tests only |
 *
 * Control characters (tab, newline, …) anywhere in the URL are refused: a
 * WHATWG parser would drop them and read another password than the policy
 * checked. Every consumer (policy, Redis and AMQP connections, audit) uses
 * this parser, so they cannot disagree.
 *
 * User name and password are percent-decoded; reserved characters in them
 * (`/ ? # @ :` and `%`) should be percent-encoded, although an unencoded `@`
 * in a password is tolerated (the last `@` ends the user info, as in
 * Python's urllib). Query parameter values are percent-decoded; `+` is kept
 * as a plus sign (file paths may contain it).
 */
import { isIP } from 'node:net';
import { ConfigError } from '../errors.ts';
import { redactUrl } from './redact.ts';
import { isNetworkKind, schemeSpec, SCHEMES, type ConnectionKind } from '../core/schemes.ts';

export { redactUrl } from './redact.ts';

/** Engine family of a URL. */
export type { ConnectionKind } from '../core/schemes.ts';

/** A parsed connection URL. */
export interface ConnectionUrl {
  /** Scheme as written, lower-cased and without SQLAlchemy's `db+` prefix or `+driver` suffix (`rediss`, `pyamqp`, `postgresql`, …). */
  scheme: string;
  kind: ConnectionKind;
  /** TLS is implied by the URL itself (`rediss`, `amqps`, `sslmode=require|verify-ca|verify-full`, or `ssl=true`). `broker_use_ssl` can still switch TLS on for a plain scheme. */
  tls: boolean;
  /** Host name or IP (IPv6 without brackets), lower-cased; `localhost` when the URL leaves it empty; `''` for sqlite/memory. A PostgreSQL Unix socket directory (`?host=/run/postgresql`) appears here as that absolute path. */
  host: string;
  /** Port, with the engine's default filled in; `undefined` for sqlite/memory. */
  port: number | undefined;
  /** Percent-decoded user name, `undefined` when absent or empty. */
  username: string | undefined;
  /** Percent-decoded password, `undefined` when absent or empty. */
  password: string | undefined;
  /** Redis database number (default 0); `undefined` for other kinds. */
  db: number | undefined;
  /** AMQP virtual host (default `/`); `undefined` for other kinds. */
  vhost: string | undefined;
  /** PostgreSQL database name; `undefined` when absent or for other kinds. */
  database: string | undefined;
  /** SQLite file path (absolute or relative) or memory instance name; `undefined` otherwise. */
  path: string | undefined;
  /** Query parameters, percent-decoded (last one wins). */
  params: Record<string, string>;
  /** The URL with its password and secret parameters masked, for messages and logs. */
  redacted: string;
}

/** Schemes `parseConnectionUrl` understands. */
export const SUPPORTED_SCHEMES: readonly string[] = Object.keys(SCHEMES);
/** What an unknown scheme's error offers: the schemes Celeriac connects to (without SQLAlchemy's `db+` spellings, accepted but not advertised). */
const SCHEMES_HINT = `use one of ${SUPPORTED_SCHEMES.filter((s) => !s.startsWith('db+')).map((s) => `${s}://`).join(', ')}`;

/**
 * Why `redis+cluster://` (and similar) is refused: Celery's Redis layout
 * cannot live on a Redis Cluster. kombu moves a message between a queue list
 * and the `unacked` hash / `unacked_index` sorted set in one MULTI or script,
 * restores from those shared keys into any queue, and spreads one queue over
 * priority lists (`q`, `q\x06\x163`, …) — keys without hash tags that a
 * cluster puts in different slots (CROSSSLOT). Tagging the keys would change
 * their names, so Python workers would no longer find them.
 */
export const REDIS_CLUSTER_HINT = 'Celery\'s Redis key layout moves messages between a queue list and the shared unacked hash and index in one atomic step, keys a Redis Cluster puts in different slots (kombu supports no cluster either); for failover use Redis Sentinel: sentinel://host:26379;sentinel://host2:26379/0 with brokerTransportOptions.master_name';

/**
 * Split a URL list (`sentinel://a:26379;sentinel://b:26379/0`, or Celery's
 * failover list `amqp://a//;amqp://b//`) into its URLs, as kombu does: on
 * a `;` followed by another `scheme://` (so a `;` in a password stays), blanks
 * dropped. A single URL gives a list of one.
 */
export function splitUrlList(url: string): string[] {
  if (typeof url !== 'string') return [url];
  // Split only before another scheme, so a `;` inside a password stays part of it.
  const parts = url.split(/;(?=\s*[a-z][a-z0-9+.-]*:\/\/)/i).map((p) => p.trim()).filter((p) => p !== '');
  return parts.length === 0 ? [url] : parts;
}

/**
 * Parse a URL or a `;`-separated list of URLs of one engine family
 * (`parseConnectionUrl` on each). Credentials, database and TLS come from
 * each URL itself; for a Sentinel list the first one names the database and
 * the server's credentials, as in kombu and Celery, so a later one that
 * names other ones is refused (ambiguous).
 */
export function parseConnectionUrls(url: string): ConnectionUrl[] {
  const parts = splitUrlList(url).map((p) => parseConnectionUrl(p));
  const first = parts[0]!;
  for (const p of parts.slice(1)) {
    if (p.kind !== first.kind) fail(url, `mixes ${first.scheme}:// and ${p.scheme}:// URLs`, 'list URLs of one engine only');
    if (first.scheme === 'sentinel' && p.scheme !== 'sentinel') fail(url, 'mixes sentinel:// with other Redis URLs', 'list only sentinel:// URLs (the sentinels name the primary)');
  }
  if (parts.length > 1 && first.kind === 'redis' && first.scheme !== 'sentinel') {
    fail(url, 'is a list of Redis servers', 'a Redis failover list names Sentinels: sentinel://host:26379;sentinel://host2:26379/0 with brokerTransportOptions.master_name');
  }
  if (first.scheme === 'sentinel') {
    for (const p of parts.slice(1)) {
      const differs = (p.username !== undefined && p.username !== first.username) || (p.password !== undefined && p.password !== first.password) || (p.db !== 0 && p.db !== first.db);
      if (differs) fail(url, 'names different credentials or databases in its sentinel:// URLs', 'the first URL names the database and the server credentials (as in Celery); give them once, there');
    }
  }
  return parts;
}

/** PostgreSQL `sslmode` values that use TLS. */
const PG_TLS_MODES = new Set(['require', 'verify-ca', 'verify-full']);
const PG_SSLMODES = new Set(['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full']);

function fail(url: string, what: string, hint: string): never {
  throw new ConfigError(`connection URL ${redactUrl(url)}: ${what}`, { hint, code: 'ERR_URL' });
}

/**
 * A piece of a URL quoted in an error message — unless the URL carries
 * credentials: in a URL with a password written unencoded, what the parser
 * takes for the host, the database or a parameter may be part of the
 * password.
 */
function shown(url: string, piece: string): string {
  return url.includes('@') ? '' : ` ${JSON.stringify(piece)}`;
}

function decode(url: string, part: string, what: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    // `what` never is the password's value itself, only its name.
    return fail(url, `${what} has an invalid percent-encoding`, 'percent-encode reserved characters, e.g. % as %25, @ as %40, / as %2F');
  }
}

function parseParams(url: string, query: string): Record<string, string> {
  const params: Record<string, string> = Object.create(null) as Record<string, string>;
  if (!query) return params;
  for (const pair of query.split('&')) {
    if (!pair) continue;
    const eq = pair.indexOf('=');
    const k = decode(url, eq === -1 ? pair : pair.slice(0, eq), 'a query parameter name');
    const v = eq === -1 ? '' : decode(url, pair.slice(eq + 1), `query parameter${shown(url, k)}`);
    params[k] = v;
  }
  return params;
}

function truthy(v: string | undefined): boolean {
  return v !== undefined && /^(1|true|yes|on|required?)$/i.test(v);
}

/** Parse a broker or result backend URL. Throws `ConfigError` (code `ERR_URL`) for anything unsupported or malformed. */
export function parseConnectionUrl(url: string): ConnectionUrl {
  if (typeof url !== 'string' || url.trim() === '') {
    throw new ConfigError('connection URL is empty', { hint: 'set a broker/backend URL such as rediss://user:password@host:6379/0', code: 'ERR_URL' });
  }
  const trimmed = url.trim();
  // WHATWG URL (and so ioredis, amqplib, libpq wrappers) silently drops tabs and newlines inside a
  // URL while a hand-written split keeps them: the two would read different passwords (issue 20 #5).
  // Nothing legitimate needs a raw control character in a URL, so refuse it; percent-encode instead.
  const ctl = /[\x00-\x1f\x7f]/.exec(trimmed);
  if (ctl) {
    fail(url, `contains a control character (U+${ctl[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}) at position ${ctl.index}`, 'remove it, or percent-encode it (a tab is %09) if it really is part of the password');
  }
  const m = /^([a-z][a-z0-9+.-]*):\/\/(.*)$/is.exec(trimmed);
  if (!m) fail(url, 'is not of the form scheme://…', SCHEMES_HINT);
  let scheme = m[1]!.toLowerCase();
  let rest = m[2]!;
  // SQLAlchemy spellings used in Celery's database result backend.
  const sqlalchemy = scheme.startsWith('db+');
  if (sqlalchemy) scheme = scheme.slice(3);
  const plus = scheme.indexOf('+');
  if (plus !== -1 && (scheme.startsWith('postgres') || scheme.startsWith('sqlite'))) scheme = scheme.slice(0, plus);
  const spec = schemeSpec(scheme);
  if (!spec && /^redis.*cluster|^cluster/.test(scheme)) {
    fail(url, 'Redis Cluster is not supported', REDIS_CLUSTER_HINT);
  }
  if (!spec) fail(url, `scheme ${JSON.stringify(scheme)} is not supported`, SCHEMES_HINT);

  const hash = rest.indexOf('#');
  if (hash !== -1) rest = rest.slice(0, hash);

  const base: ConnectionUrl = {
    scheme, kind: spec.kind, tls: spec.tls, host: '', port: undefined, username: undefined, password: undefined,
    db: undefined, vhost: undefined, database: undefined, path: undefined, params: {}, redacted: redactUrl(url),
  };

  if (spec.kind === 'sqlite' || spec.kind === 'memory') {
    const q = rest.indexOf('?');
    const rawPath = q === -1 ? rest : rest.slice(0, q);
    base.params = parseParams(url, q === -1 ? '' : rest.slice(q + 1));
    let path = decode(url, rawPath, 'the path');
    if (spec.kind === 'sqlite') {
      if (sqlalchemy) {
        // SQLAlchemy: sqlite:///rel.db is relative, sqlite:////abs.db absolute.
        path = path.startsWith('/') ? path.slice(1) : path;
      }
      path = path.replace(/^\/{2,}/, '/');
    }
    base.path = path === '' ? undefined : path;
    return base;
  }

  // Network URL: authority ends at the first / ? after the user info.
  // The user info ends at the last @ before the first / or ? that follows it.
  let userinfo: string | undefined;
  let afterUser = rest;
  {
    const firstDelim = rest.search(/[/?]/);
    const at = rest.lastIndexOf('@', firstDelim === -1 ? undefined : firstDelim);
    if (at !== -1 && (firstDelim === -1 || at < firstDelim)) {
      userinfo = rest.slice(0, at);
      afterUser = rest.slice(at + 1);
    } else if (firstDelim !== -1 && rest.indexOf('@', firstDelim) !== -1 && /^[^/?:]*:(?!\d*(?:[/?]|$))[^@]*[/?][^@]*@/.test(rest)) {
      // Looks like a password with an unencoded / or ? in it.
      fail(url, 'the password seems to contain an unencoded / or ?', 'percent-encode the password (encodeURIComponent), e.g. / as %2F and ? as %3F');
    }
  }
  const delim = afterUser.search(/[/?]/);
  const hostport = delim === -1 ? afterUser : afterUser.slice(0, delim);
  let pathAndQuery = delim === -1 ? '' : afterUser.slice(delim);
  const qi = pathAndQuery.indexOf('?');
  const rawPath = qi === -1 ? pathAndQuery : pathAndQuery.slice(0, qi);
  base.params = parseParams(url, qi === -1 ? '' : pathAndQuery.slice(qi + 1));
  pathAndQuery = rawPath;

  if (userinfo !== undefined) {
    const colon = userinfo.indexOf(':');
    const rawUser = colon === -1 ? userinfo : userinfo.slice(0, colon);
    const rawPass = colon === -1 ? '' : userinfo.slice(colon + 1);
    const user = decode(url, rawUser, 'the user name');
    const pass = decode(url, rawPass, 'the password');
    base.username = user === '' ? undefined : user;
    base.password = pass === '' ? undefined : pass;
  }

  // host[:port], [v6]:port
  let host: string;
  let portText: string | undefined;
  if (hostport.startsWith('[')) {
    const close = hostport.indexOf(']');
    if (close === -1) fail(url, 'has an unterminated IPv6 address', 'write IPv6 hosts as [::1]:6379');
    host = hostport.slice(1, close);
    const tail = hostport.slice(close + 1);
    if (tail !== '' && !tail.startsWith(':')) fail(url, 'has garbage after the IPv6 address', 'write IPv6 hosts as [::1]:6379');
    portText = tail === '' ? undefined : tail.slice(1);
    if (isIP(host) !== 6) fail(url, `host${shown(url, `[${host}]`)} is not an IPv6 address`, 'write IPv6 hosts as [::1]:6379');
  } else {
    const colon = hostport.lastIndexOf(':');
    if (colon !== -1 && hostport.indexOf(':') !== colon) fail(url, 'has an IPv6 host without brackets, or an unencoded : in the password', 'write IPv6 hosts as [::1] and percent-encode : in passwords as %3A');
    host = colon === -1 ? hostport : hostport.slice(0, colon);
    portText = colon === -1 ? undefined : hostport.slice(colon + 1);
    host = decode(url, host, 'the host');
  }
  host = host.toLowerCase();
  if (host !== '' && !/^[a-z0-9._~:%-]+$/.test(host)) fail(url, `host${shown(url, host)} is not a valid host name`, 'check the host part of the URL; percent-encode reserved characters in the password');
  if (portText !== undefined && portText !== '') {
    if (!/^\d{1,5}$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535) {
      fail(url, 'has an invalid port', 'the port must be a number from 1 to 65535; percent-encode : in passwords as %3A');
    }
    base.port = Number(portText);
  } else {
    base.port = spec.port;
  }

  if (spec.kind === 'postgres') {
    // libpq: an empty host means the local Unix socket; ?host=/dir names the socket directory.
    const socketDir = base.params.host;
    base.host = host !== '' ? host : socketDir?.startsWith('/') ? socketDir : 'localhost';
    const db = rawPath.replace(/^\//, '');
    base.database = db === '' ? undefined : decode(url, db, 'the database name');
    const mode = base.params.sslmode;
    if (mode !== undefined && !PG_SSLMODES.has(mode)) {
      fail(url, `sslmode${shown(url, mode)} is not a PostgreSQL sslmode`, 'use sslmode=verify-full (or one of disable, allow, prefer, require, verify-ca)');
    }
    base.tls = mode !== undefined && PG_TLS_MODES.has(mode);
    return base;
  }

  base.host = host === '' ? 'localhost' : host;
  if (truthy(base.params.ssl) || truthy(base.params.tls)) base.tls = true;

  if (spec.kind === 'redis') {
    const dbText = rawPath.replace(/^\//, '').replace(/\/$/, '') || base.params.db || '0';
    if (!/^\d{1,5}$/.test(dbText)) fail(url, `Redis database${shown(url, dbText)} is not a number`, 'write the database as a number after the host, e.g. redis://host:6379/0; percent-encode reserved characters in the password (encodeURIComponent)');
    base.db = Number(dbText);
    return base;
  }

  // amqp: vhost = path without its leading slash, percent-decoded; '' → '/'.
  const vhost = decode(url, rawPath.slice(1), 'the virtual host');
  base.vhost = vhost === '' ? '/' : vhost;
  return base;
}

/**
 * Whether a host is the local machine: `localhost` (and `localhost.`),
 * 127.0.0.0/8, `::1` (any spelling, with or without brackets),
 * IPv4-mapped loopback (`::ffff:127.x.x.x`), or an absolute path (a Unix
 * socket). Anything else, including names that merely resolve to a
 * loopback address, counts as a network host: DNS can change.
 */
export function isLoopbackHost(host: string): boolean {
  let h = host.trim().toLowerCase();
  if (h.startsWith('/')) return true;
  if (h.startsWith('[') && h.endsWith(']')) h = h.slice(1, -1);
  if (h === 'localhost' || h === 'localhost.') return true;
  const v = isIP(h);
  if (v === 4) return h.startsWith('127.');
  if (v === 6) {
    const mapped = /^(?:0{0,4}:){0,4}:?(?:0{0,4}:)?ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(h);
    if (mapped?.[1]) return mapped[1].startsWith('127.');
    // Expand and compare with ::1.
    return expandIpv6(h) === '0000:0000:0000:0000:0000:0000:0000:0001';
  }
  return false;
}

function expandIpv6(h: string): string {
  const [head = '', tail] = h.split('::');
  const a = head ? head.split(':') : [];
  const b = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const fill = tail === undefined ? [] : Array(8 - a.length - b.length).fill('0');
  return [...a, ...fill, ...b].map((p) => p.padStart(4, '0')).join(':');
}

/** Whether the URL names a network service (Redis, AMQP, PostgreSQL), as opposed to a local file or memory. */
export function isNetworkUrl(url: ConnectionUrl): boolean {
  return isNetworkKind(url.kind);
}
