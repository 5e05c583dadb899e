/**
 * Where the dashboard keeps what must outlive one request and be the same on
 * every replica: sessions and login-failure counters. `memory` (tests, one
 * process that may forget both on restart) or SQLite (state-sqlite.ts: a
 * 0600 file beside the users file, shared by every dashboard on the host).
 *
 * A Redis store would implement the same two backends; it is not built yet.
 */
import { createMemoryThrottleBackend, type ThrottleBackend } from './lockout.ts';
import { createMemorySessionBackend, type SessionBackend } from './sessions.ts';

export interface DashboardStateStore {
  readonly kind: 'memory' | 'sqlite';
  /** Where it lives, for messages (a path, or `memory`). */
  readonly location: string;
  readonly sessions: SessionBackend;
  readonly throttles: ThrottleBackend;
  close(): Promise<void>;
}

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
