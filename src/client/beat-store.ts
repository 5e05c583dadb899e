/**
 * Opening celeriac beat's state store for an app (through the registry):
 * on the broker's engine when it has an atomic lock (Redis, SQLite,
 * PostgreSQL, memory),
 * else on the result backend's, else a `ConfigError` that says what to set.
 * RabbitMQ has no lock a leader election could rely on.
 */
import type { BeatStore } from '../core/beat-store.ts';
import { redactUrl } from '../config/redact.ts';
import { ConfigError } from '../errors.ts';
import { createBeatStore, engineOf } from '../transport/index.ts';
import type { App } from './app.ts';

/** Options of {@link openBeatStore}. */
export interface OpenBeatStoreOptions {
  /** Keep the state here instead (a redis://, rediss://, sqlite:// or postgres:// URL). */
  stateUrl?: string;
  /** The schedule's name: instances with the same name share one leader and one state (default `default`). */
  namespace?: string;
}

/** The store and where it lives (for logs: the URL is redacted). */
export interface OpenedBeatStore {
  store: BeatStore;
  where: string;
}

/** Open the beat store for `app`. */
export async function openBeatStore(app: App, options: OpenBeatStoreOptions = {}): Promise<OpenedBeatStore> {
  const namespace = options.namespace ?? 'default';
  if (!/^[\w.:@-]{1,100}$/.test(namespace)) throw new ConfigError(`beat name ${JSON.stringify(namespace)} is not valid`, { hint: 'use letters, digits and . _ : @ - (at most 100)' });
  const s = app.settings;
  const prefix = typeof s.brokerTransportOptions.globalKeyprefix === 'string' ? s.brokerTransportOptions.globalKeyprefix : '';
  const candidates: Array<{ url: string; side: 'broker' | 'backend' }> = options.stateUrl
    ? [{ url: options.stateUrl, side: options.stateUrl === s.resultBackend ? 'backend' : 'broker' }]
    : [
        ...(s.brokerUrl ? [{ url: s.brokerUrl, side: 'broker' as const }] : []),
        ...(s.resultBackend ? [{ url: s.resultBackend, side: 'backend' as const }] : []),
      ];
  for (const c of candidates) {
    const store = await createBeatStore({ url: c.url, side: c.side, keyPrefix: c.side === 'broker' ? prefix : '', namespace, settings: s, logger: app.logger });
    if (store) return { store, where: `${engineOf(c.url)?.title ?? 'engine'} at ${redactUrl(c.url)} (the ${options.stateUrl ? '--state-url' : c.side === 'broker' ? 'broker' : 'result backend'})` };
  }
  const tried = candidates.map((c) => redactUrl(c.url)).join(' and ') || 'no URL';
  throw new ConfigError(`celeriac beat needs a lock to elect one leader, and ${tried} has none (RabbitMQ keeps no lock)`, {
    hint: 'set a redis://, rediss://, sqlite:// or postgres:// result backend (CELERIAC_RESULT_BACKEND), or pass --state-url with one: beat keeps its lease and last runs there',
  });
}
