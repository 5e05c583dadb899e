/**
 * What each engine is, as plain data: the URL schemes it answers, whether
 * they mean TLS, their default ports, what the security policy demands of
 * it, and where its replay nonces can live.
 *
 * Pure (no imports that do I/O), so that `config/` — the URL parser and
 * the policy — and `celeriac audit` can read it. The registry
 * (`transport/index.ts`) maps the same names to the engine folders, which
 * it loads only when used.
 */

/** Engines Celeriac connects to, one folder each under `src/transport/`. */
export type EngineName = 'redis' | 'amqp' | 'sqlite' | 'memory' | 'postgres';

/** Engine family of a URL (every scheme Celeriac understands has an engine). */
export type ConnectionKind = EngineName;

/** One URL scheme. */
export interface SchemeSpec {
  kind: ConnectionKind;
  /** The scheme itself means TLS (`rediss`, `amqps`). */
  tls: boolean;
  /** Port when the URL gives none; `undefined` for engines without a network port. */
  port?: number;
}

/**
 * Where an engine can keep replay nonces: `shared` (every worker of the
 * deployment, on the engine's server), `file` (the processes of one
 * machine, in the engine's file), `process` (this process only).
 */
export type ReplayScope = 'shared' | 'file' | 'process';

/** The static half of an engine's descriptor (`core/engine.ts` adds the factories). */
export interface EngineInfo {
  readonly name: EngineName;
  /** Its name in messages (`Redis`, `RabbitMQ`, …). */
  readonly title: string;
  /** Schemes it answers (the URL parser's table is built from these). */
  readonly schemes: Readonly<Record<string, { tls: boolean; port?: number }>>;
  /** A network service: the policy requires credentials and TLS (or an explicit unsafe override). */
  readonly network: boolean;
  /** It has a result backend. */
  readonly backend: boolean;
  /** Where its replay store keeps nonces, when it has one. */
  readonly replay?: ReplayScope;
}

/** Every engine, by name. Adding an engine: one entry here, one folder, one loader in `transport/index.ts`. */
export const ENGINES: Readonly<Record<EngineName, EngineInfo>> = {
  // `sentinel://` (kombu's SentinelChannel, Celery's SentinelBackend): the hosts are Redis Sentinels, which name the primary.
  redis: { name: 'redis', title: 'Redis', schemes: { redis: { tls: false, port: 6379 }, rediss: { tls: true, port: 6379 }, sentinel: { tls: false, port: 26379 } }, network: true, backend: true, replay: 'shared' },
  amqp: {
    name: 'amqp',
    title: 'RabbitMQ',
    schemes: { amqp: { tls: false, port: 5672 }, pyamqp: { tls: false, port: 5672 }, amqps: { tls: true, port: 5671 }, pyamqps: { tls: true, port: 5671 } },
    network: true,
    backend: false,
  },
  sqlite: { name: 'sqlite', title: 'SQLite', schemes: { sqlite: { tls: false } }, network: false, backend: true, replay: 'file' },
  memory: { name: 'memory', title: 'memory', schemes: { memory: { tls: false } }, network: false, backend: true, replay: 'process' },
  // TLS comes from `sslmode` (verify-full), not from the scheme; `db+postgresql` is Celery's (SQLAlchemy's) spelling of a database result backend.
  postgres: {
    name: 'postgres',
    title: 'PostgreSQL',
    schemes: { postgres: { tls: false, port: 5432 }, postgresql: { tls: false, port: 5432 }, 'db+postgresql': { tls: false, port: 5432 } },
    network: true,
    backend: true,
    replay: 'shared',
  },
};

/** Every scheme Celeriac understands, lower-case, in the order engines are listed. */
export const SCHEMES: Readonly<Record<string, SchemeSpec>> = Object.freeze({
  ...Object.fromEntries(Object.values(ENGINES).flatMap((e) => Object.entries(e.schemes).map(([s, v]) => [s, { kind: e.name, ...v }]))),
});

/** The spec of a (lower-case) scheme, or undefined when Celeriac does not know it. */
export function schemeSpec(scheme: string): SchemeSpec | undefined {
  return Object.hasOwn(SCHEMES, scheme) ? SCHEMES[scheme] : undefined;
}

/**
 * The spec of a URL's scheme: the text before its first `:`, case ignored
 * (no SQLAlchemy spellings: `config/url.ts` reads those), or undefined
 * when Celeriac does not know it.
 */
export function urlSchemeSpec(url: string | undefined): SchemeSpec | undefined {
  if (url === undefined) return undefined;
  const colon = url.indexOf(':');
  if (colon <= 0) return undefined;
  const scheme = url.slice(0, colon).toLowerCase();
  // SQLAlchemy's driver suffix (`postgresql+psycopg2`, `db+postgresql+psycopg2`) names a Python driver: same server.
  const plus = scheme.indexOf('+', scheme.startsWith('db+') ? 3 : 0);
  return schemeSpec(plus !== -1 && scheme.includes('postgres') ? scheme.slice(0, plus) : scheme);
}

/** Whether a kind is a network service (credentials and TLS required by the policy). */
export function isNetworkKind(kind: ConnectionKind): boolean {
  return ENGINES[kind].network;
}

/** The schemes of the engines that pass `filter`, as `a://, b:// or c://` for hints (without kombu's `py` aliases). */
export function schemeHint(filter: (e: EngineInfo) => boolean = () => true): string {
  const all = Object.values(ENGINES).filter(filter).flatMap((e) => Object.keys(e.schemes).filter((s) => !s.startsWith('py')).map((s) => `${s}://`));
  return all.length <= 1 ? all.join('') : `${all.slice(0, -1).join(', ')} or ${all[all.length - 1]}`;
}

// ── rpc:// results (issue 17 item 5) ───────────────────────────────────

/**
 * True for Celery's `rpc://` result backend: results travel as messages to
 * the caller's reply queue on the broker (RabbitMQ), so the URL names no
 * server of its own and the broker's checks apply to it.
 */
export function isRpcBackendUrl(url: string | undefined): boolean {
  return url !== undefined && /^rpc:/i.test(url.trim());
}
