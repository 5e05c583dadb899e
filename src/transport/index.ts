/**
 * The engine registry: the one place where a URL's scheme picks an engine.
 *
 * The schemes, TLS flags, default ports and policy facts of each engine are
 * plain data in `core/schemes.ts` (the URL parser reads them too); this
 * table adds where each engine's folder is. Engines load on first use, so
 * an app on Redis never loads the AMQP or SQLite libraries.
 *
 * Adding an engine: a folder `transport/<name>/` whose `index.ts` exports
 * its `Engine`, its entry in `core/schemes.ts`, one loader line below, and
 * one conformance file under `test/conformance/`.
 */
import type { Redis } from 'ioredis';
import { ConfigError } from '../errors.ts';
import { redactUrl } from '../config/redact.ts';
import type { AdapterContext } from '../core/adapter-context.ts';
import type { SharedTokenBuckets } from '../core/token-buckets.ts';
import type { Broker } from '../core/broker.ts';
import type { ResultBackend } from '../core/backend.ts';
import type { Engine, ReplayStoreOptions } from '../core/engine.ts';
import type { ReplayStore } from '../core/replay-store.ts';
import type { BeatStore, BeatStoreOptions } from '../core/beat-store.ts';
import type { DashboardStateOptions, DashboardStateStore } from '../core/dashboard-state.ts';
import { ENGINES, isRpcBackendUrl, schemeHint, urlSchemeSpec, type EngineInfo, type EngineName } from '../core/schemes.ts';

// The embedded default's file locations and file-safety checks: pure helpers
// (no SQLite driver) that the app, the demo and `celeriac audit` need
// without opening the engine.
export { defaultSqliteUrl, sqliteUrlForPath } from './sqlite/location.ts';
export { sqliteFileChecks } from './sqlite/file-safety.ts';
export type { Broker } from '../core/broker.ts';
export type { ResultBackend } from '../core/backend.ts';
export type { Engine } from '../core/engine.ts';

/** Where each engine lives (loaded on first use). */
const LOADERS: Record<EngineName, () => Promise<Engine>> = {
  redis: async () => (await import('./redis/index.ts')).engine,
  amqp: async () => (await import('./amqp/index.ts')).engine,
  sqlite: async () => (await import('./sqlite/index.ts')).engine,
  memory: async () => (await import('./memory/index.ts')).engine,
  postgres: async () => (await import('./postgres/index.ts')).engine,
};

/**
 * The engine a URL names (by the scheme before its first `:`, case
 * ignored), or undefined when no engine answers it. Cheap: loads nothing.
 */
export function engineOf(url: string | undefined): EngineInfo | undefined {
  const kind = urlSchemeSpec(url)?.kind;
  return kind === undefined ? undefined : ENGINES[kind];
}

/** Load the engine of a URL. */
export async function loadEngine(url: string): Promise<Engine | undefined> {
  const info = engineOf(url);
  return info ? LOADERS[info.name]() : undefined;
}

/** Create the broker adapter for a URL (`redis://`, `rediss://`, `memory://`, …). */
export async function createBroker(url: string, ctx: AdapterContext): Promise<Broker> {
  const engine = await loadEngine(url);
  if (!engine) {
    throw new ConfigError(`unsupported broker URL ${redactUrl(url)}`, { hint: `use ${schemeHint()}` });
  }
  return engine.createBroker(url, ctx);
}

/** Create the result backend adapter for a URL. */
export async function createBackend(url: string, ctx: AdapterContext): Promise<ResultBackend> {
  if (isRpcBackendUrl(url)) return createRpcBackend(url, ctx);
  const info = engineOf(url);
  const engine = info?.backend ? await LOADERS[info.name]() : undefined;
  if (!engine?.createBackend) {
    throw new ConfigError(`unsupported result backend URL ${redactUrl(url)}`, { hint: `use ${schemeHint((e) => e.backend)}` });
  }
  return engine.createBackend(url, ctx);
}

/**
 * Celery's `rpc://` results: sent as messages to the caller's reply queue
 * over the broker, which must be RabbitMQ (kombu's Redis emulation of it is
 * not supported). Anything else is a `ConfigError` saying so.
 */
async function createRpcBackend(url: string, ctx: AdapterContext): Promise<ResultBackend> {
  if (!/^rpc:\/\/\/?$/i.test(url.trim())) {
    throw new ConfigError(`result backend URL ${redactUrl(url)} is not rpc://`, { hint: "rpc results use the broker's connection: write exactly rpc://" });
  }
  const broker = ctx.settings.brokerUrl;
  const info = engineOf(broker);
  const engine = info ? await LOADERS[info.name]() : undefined;
  if (!broker || !engine?.createRpcBackend) {
    throw new ConfigError(`resultBackend rpc:// needs a RabbitMQ broker, and the broker is ${broker ? redactUrl(broker) : 'not set'}`, {
      hint: `use an amqp:// or amqps:// brokerUrl with rpc://, or a result backend of its own (${schemeHint((e) => e.backend)})`,
    });
  }
  return engine.createRpcBackend(broker, ctx);
}

/**
 * Open the replay store of an engine, on the server or file of
 * `options.url`. Throws `ConfigError` when that engine keeps no replay
 * nonces.
 */
export async function createReplayStore(name: EngineName, options: ReplayStoreOptions): Promise<ReplayStore> {
  const engine = ENGINES[name].replay ? await LOADERS[name]() : undefined;
  if (!engine?.createReplayStore) {
    throw new ConfigError(`the ${ENGINES[name].title} engine keeps no replay nonces`, { hint: 'use securityReplayStore: auto, local or memory' });
  }
  return engine.createReplayStore(options);
}

/**
 * A replay store in a file of its own, shared by the processes of this
 * machine (`securityReplayStore: local`): the SQLite engine's store.
 */
export async function createLocalReplayStore(file: string, ctx: AdapterContext): Promise<ReplayStore> {
  const { sqliteUrlForPath } = await import('./sqlite/location.ts');
  const engine = await LOADERS.sqlite();
  return engine.createReplayStore!({ ...ctx, url: sqliteUrlForPath(file), side: 'broker', keyPrefix: '' });
}

/**
 * Token buckets shared by every client of the server behind `url` (the
 * `shared` send rate limits), on a connection named `celeriac:<role>`.
 * Only an engine that keeps them atomically across processes has them
 * (Redis, PostgreSQL).
 */
export async function openSharedTokenBuckets(url: string, side: 'broker' | 'backend', role: string, ctx: AdapterContext): Promise<SharedTokenBuckets> {
  const name = engineOf(url)?.name;
  if (name === 'postgres') {
    const { openPgTokenBuckets } = await import('./postgres/token-buckets.ts');
    return openPgTokenBuckets({ ...ctx, url, side, role });
  }
  if (name !== 'redis') throw new ConfigError(`${redactUrl(url)} cannot keep shared token buckets`, { hint: 'use redis://, rediss:// or postgres:// for the broker or the result backend' });
  const { openRedisClient } = await import('./redis/index.ts');
  const { createRedisTokenBuckets } = await import('./redis/token-buckets.ts');
  return createRedisTokenBuckets(await openRedisClient(url, side, role, ctx));
}

/**
 * Open celeriac beat's store on the server or file of `options.url`, or
 * undefined when that URL's engine has no atomic lock to elect a leader
 * with (RabbitMQ): the caller then tries the other URL or refuses.
 */
export async function createBeatStore(options: BeatStoreOptions): Promise<BeatStore | undefined> {
  const engine = await loadEngine(options.url);
  return engine?.createBeatStore ? engine.createBeatStore(options) : undefined;
}

/**
 * Open the dashboard's session and lockout store on the server of
 * `options.url`, or undefined when that URL's engine keeps none (only Redis
 * does: the dashboard keeps its own SQLite file or memory otherwise).
 */
export async function createDashboardStateStore(options: DashboardStateOptions): Promise<DashboardStateStore | undefined> {
  const engine = await loadEngine(options.url);
  return engine?.createDashboardStateStore ? engine.createDashboardStateStore(options) : undefined;
}
