/**
 * Opening the dashboard's session and lockout store on an app's Redis
 * (through the registry), for `celeriac dashboard --session-store redis`:
 * the broker's server when it is Redis, else the result backend's, else a
 * `ConfigError` that says what to set. Dashboards on several hosts pointed
 * at the same Redis share sessions, logouts and lockout counts.
 */
import type { DashboardStateStore } from '../core/dashboard-state.ts';
import { redactUrl } from '../config/redact.ts';
import { ConfigError } from '../errors.ts';
import { createDashboardStateStore } from '../transport/index.ts';
import type { App } from './app.ts';

/** Open the store for `app` on its broker's or result backend's Redis. */
export async function openDashboardStateStore(app: App): Promise<DashboardStateStore> {
  const s = app.settings;
  const prefix = typeof s.brokerTransportOptions.globalKeyprefix === 'string' ? s.brokerTransportOptions.globalKeyprefix : '';
  const candidates: Array<{ url: string; side: 'broker' | 'backend' }> = [
    ...(s.brokerUrl ? [{ url: s.brokerUrl, side: 'broker' as const }] : []),
    ...(s.resultBackend ? [{ url: s.resultBackend, side: 'backend' as const }] : []),
  ];
  for (const c of candidates) {
    const store = await createDashboardStateStore({ url: c.url, side: c.side, keyPrefix: c.side === 'broker' ? prefix : '', settings: s, logger: app.logger });
    if (store) return store;
  }
  const tried = candidates.map((c) => redactUrl(c.url)).join(' and ') || 'no URL';
  throw new ConfigError(`--session-store redis needs a Redis broker or result backend, and the app has ${tried}`, {
    hint: 'set a redis:// or rediss:// broker or result backend, or use --session-store sqlite:<path> (dashboards on one host) or memory',
  });
}
