/**
 * The Engine descriptor: everything the rest of Celeriac knows about one
 * engine (Redis, RabbitMQ, SQLite, memory). Each engine folder's
 * `index.ts` exports one; the registry (`transport/index.ts`) finds it by
 * URL scheme and loads it only when a URL asks for it.
 *
 * The static half (`EngineInfo`: schemes, TLS, default ports, what the
 * policy demands, where replay nonces live) is plain data in
 * `core/schemes.ts`, so that pure code (config, policy, audit) can read it
 * without loading an engine.
 */
import type { AdapterContext } from './adapter-context.ts';
import type { ResultBackend } from './backend.ts';
import type { Broker } from './broker.ts';
import type { ReplayStore } from './replay-store.ts';
import type { BeatStore, BeatStoreOptions } from './beat-store.ts';
import type { DashboardStateOptions, DashboardStateStore } from './dashboard-state.ts';
import type { EngineInfo } from './schemes.ts';

export type { EngineInfo, EngineName, ReplayScope } from './schemes.ts';

/** Options of {@link Engine.createReplayStore}. */
export interface ReplayStoreOptions extends AdapterContext {
  /** The URL whose server or file keeps the nonces (absent for a store kept in this process). */
  url?: string;
  /** Which setting `url` comes from (names the connection; its credentials follow that setting on SIGHUP). */
  side: 'broker' | 'backend';
  /** Prefix of the store's keys on a shared server (`brokerTransportOptions.globalKeyprefix`). */
  keyPrefix: string;
}

/** One engine: its static facts and its factories. */
export interface Engine extends EngineInfo {
  /** The broker for a URL of this engine (not connected yet). */
  createBroker(url: string, ctx: AdapterContext): Broker;
  /** The result backend for a URL of this engine (not connected yet); absent when the engine keeps no results. */
  createBackend?(url: string, ctx: AdapterContext): ResultBackend;
  /** Celery's `rpc://` results over this engine's broker at `brokerUrl` (not connected yet); absent when the engine has no reply queues for them. */
  createRpcBackend?(brokerUrl: string, ctx: AdapterContext): ResultBackend;
  /** A replay store (opened: connected or with its file open); absent when the engine cannot keep nonces. */
  createReplayStore?(options: ReplayStoreOptions): Promise<ReplayStore>;
  /** celeriac beat's lease and state (opened); absent when the engine has no atomic lock (RabbitMQ). */
  createBeatStore?(options: BeatStoreOptions): Promise<BeatStore>;
  /** The dashboard's sessions and lockout counters on this engine's server (opened); absent when the dashboard keeps them itself. */
  createDashboardStateStore?(options: DashboardStateOptions): Promise<DashboardStateStore>;
}
