/**
 * Where the dashboard keeps what must outlive one request and be the same on
 * every replica: sessions and login-failure counters. `memory` (tests, one
 * process that may forget both on restart), SQLite (state-sqlite.ts: a 0600
 * file beside the users file, shared by every dashboard on the host) or the
 * app's Redis (shared by dashboards on any host).
 *
 * Redis: the engine's `createDashboardStateStore`, opened for an app by
 * client/dashboard-state.ts (the dashboard never reaches an engine itself).
 */
import type { DashboardStateStore } from '../../core/dashboard-state.ts';
import { createMemoryThrottleBackend } from './lockout.ts';
import { createMemorySessionBackend } from './sessions.ts';

export type { DashboardStateStore } from '../../core/dashboard-state.ts';

/**
 * State in this process. Passing the same object to a second server (tests)
 * shares it like the SQLite file would.
 */
export function createMemoryStateStore(): DashboardStateStore {
  return {
    kind: 'memory',
    location: 'memory',
    sessions: createMemorySessionBackend(),
    throttles: createMemoryThrottleBackend(),
    async close() {},
  };
}
