/**
 * Storage of `celeriac dashboard`'s sessions and login-failure counters,
 * where every dashboard replica reaches it: the dashboard's own SQLite file,
 * its memory, or an engine's server (Redis) opened through the registry.
 * Storage only: the rules (token hashing, CSRF derivation, idle and absolute
 * timeouts, lockout windows) live in src/dashboard/server/, once for every
 * store, and a store never sees a cookie token or a CSRF token.
 */
import type { AdapterContext } from './adapter-context.ts';

/** What a store keeps per session. `id` is the hex SHA-256 of the cookie token, never the token. */
export interface SessionRecord {
  id: string;
  user: string;
  /** `viewer`, `operator` or `admin`; the dashboard refuses a record with anything else. */
  role: string;
  viewClear: boolean;
  /** `password` or `oidc`. */
  method: string;
  /** ms since the epoch. */
  createdAt: number;
  /** ms since the epoch. */
  lastSeen: number;
}

/** Session records keyed by {@link SessionRecord.id}. */
export interface SessionBackend {
  /** Store a new record. `expiresAt`: when it is over at the latest (a store with native expiry drops it then). */
  insert(record: SessionRecord, expiresAt: number): Promise<void>;
  find(id: string): Promise<SessionRecord | undefined>;
  /** Record a request at `lastSeen`; a no-op for a record that is gone (never re-creates one). */
  touch(id: string, lastSeen: number): Promise<void>;
  delete(id: string): Promise<void>;
  /** Delete every session of `user`; returns how many. */
  deleteUser(user: string): Promise<number>;
  /** Delete every session; returns how many. */
  deleteAll(): Promise<number>;
  /** Delete records last seen before `seenBefore` or created before `createdBefore`; returns how many. */
  purge(seenBefore: number, createdBefore: number): Promise<number>;
  count(): Promise<number>;
}

/** The counters of one throttle key. `expiresAt`: when the entry no longer matters (no lock, no failure in the window). */
export interface ThrottleEntry {
  failures: number[];
  lockedUntil: number;
  expiresAt: number;
}

/** Throttle entries. `update` is atomic per key, also across processes sharing the store. */
export interface ThrottleBackend {
  get(key: string): Promise<ThrottleEntry | undefined>;
  /** Replace the entry of `key` with `fn(current)` (undefined deletes it) in one atomic step; returns what was stored. `fn` may run more than once. */
  update(key: string, fn: (current: ThrottleEntry | undefined) => ThrottleEntry | undefined): Promise<ThrottleEntry | undefined>;
  delete(key: string): Promise<void>;
  /** Delete entries that expired before `t`; returns how many (0 for a store that expires them itself). */
  purge(t: number): Promise<number>;
}

/** One opened store of both. */
export interface DashboardStateStore {
  readonly kind: 'memory' | 'sqlite' | 'redis';
  /** Where it lives, for messages (a path, a redacted URL, or `memory`). */
  readonly location: string;
  readonly sessions: SessionBackend;
  readonly throttles: ThrottleBackend;
  close(): Promise<void>;
}

/** Options of an engine's `createDashboardStateStore`. */
export interface DashboardStateOptions extends AdapterContext {
  /** The URL whose server keeps the state. */
  url: string;
  /** Which setting `url` comes from (its TLS settings and credentials). */
  side: 'broker' | 'backend';
  /** Prefix of the keys on a shared server (`brokerTransportOptions.globalKeyprefix`). */
  keyPrefix: string;
}
