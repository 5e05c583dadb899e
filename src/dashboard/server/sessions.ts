/**
 * Server-side sessions. The cookie carries a random token (256 bits); the
 * store keeps only its SHA-256, so whoever reads the store (a backup, a
 * copied file) holds no usable cookie. Who the user is and their role live
 * in the store; the CSRF token is not stored at all but derived from the
 * cookie token (HMAC), so it is bound to that one session and is equally
 * unknown to a reader of the store.
 *
 * Idle and absolute timeouts are checked on every read (an expired record is
 * deleted when met, and every login purges all expired records); a new token
 * on every login (no fixation); "log out everywhere" drops every session of
 * a user. The rules live here once; a {@link SessionBackend} (memory, SQLite,
 * Redis: see state.ts and core/dashboard-state.ts) only keeps records.
 */
import { createHash, createHmac, randomBytes } from 'node:crypto';
import type { SessionBackend, SessionRecord } from '../../core/dashboard-state.ts';
import { isRole, type Role } from './roles.ts';

export type { SessionBackend, SessionRecord } from '../../core/dashboard-state.ts';

/** A live session, as route handlers see it. */
export interface Session extends Omit<SessionRecord, 'role' | 'method'> {
  role: Role;
  /** How the user logged in. */
  method: 'password' | 'oidc';
  /** Synchronizer token: every state-changing request must echo it in `x-csrf-token`. Derived from the cookie token, never stored. */
  csrf: string;
}

export interface SessionStore {
  /** A new session with a fresh token; the token goes into the cookie and nowhere else. */
  create(fields: Pick<Session, 'user' | 'role' | 'viewClear' | 'method'>): Promise<{ token: string; session: Session }>;
  /** The live session for the cookie token (touching it), or undefined when missing, malformed or timed out. */
  get(token: string | undefined): Promise<Session | undefined>;
  /** End the session of this cookie token (logout, rotation at login). */
  destroy(token: string | undefined): Promise<void>;
  /** Drop every session of `user`; returns how many. */
  destroyUser(user: string): Promise<number>;
  /** Drop every session (`celeriac dashboard sessions revoke --all`: what a restart did while sessions lived in memory); returns how many. */
  destroyAll(): Promise<number>;
  /** Delete every expired record; returns how many. */
  purge(): Promise<number>;
  count(): Promise<number>;
}

export interface SessionTimeouts {
  /** Idle timeout, ms (default 30 minutes). */
  idleMs?: number;
  /** Absolute lifetime, ms (default 12 hours). */
  absoluteMs?: number;
  /** Clock, for tests. */
  now?: () => number;
}

/** 32 random bytes in base64url: exactly 43 characters of this alphabet. */
const TOKEN_RE = /^[A-Za-z0-9_-]{43}$/;

/** The store key of a cookie token: hex SHA-256. A 256-bit random token needs no salt or slow hash. */
export function sessionIdOf(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** The CSRF token of a session: HMAC keyed by the cookie token, so it exists only where the cookie does. */
export function csrfOf(token: string): string {
  return createHmac('sha256', token).update('celeriac-dashboard csrf v1').digest('base64url');
}

/**
 * The session rules over a backend. `touch` writes `lastSeen` at most every
 * `idleMs / 20` (and at most every minute), so a busy tab does not write on
 * every request; the idle timeout therefore ends a session up to 5% early,
 * never late.
 */
export function createSessionStore(backend: SessionBackend, options: SessionTimeouts = {}): SessionStore {
  const idleMs = options.idleMs ?? 30 * 60_000;
  const absoluteMs = options.absoluteMs ?? 12 * 3_600_000;
  const touchEveryMs = Math.min(60_000, Math.floor(idleMs / 20));
  const now = options.now ?? Date.now;
  const expired = (s: SessionRecord, t: number): boolean => t - s.lastSeen > idleMs || t - s.createdAt > absoluteMs;
  const purge = (): Promise<number> => {
    const t = now();
    return backend.purge(t - idleMs, t - absoluteMs);
  };
  return {
    async create(fields) {
      await purge();
      const t = now();
      const token = randomBytes(32).toString('base64url');
      const session: Session = { user: fields.user, role: fields.role, viewClear: fields.viewClear, method: fields.method, id: sessionIdOf(token), createdAt: t, lastSeen: t, csrf: csrfOf(token) };
      const { csrf: _notStored, ...record } = session;
      await backend.insert(record, t + absoluteMs);
      return { token, session };
    },
    async get(token) {
      if (typeof token !== 'string' || !TOKEN_RE.test(token)) return undefined;
      const id = sessionIdOf(token);
      const record = await backend.find(id);
      if (!record) return undefined;
      const t = now();
      const { role, method } = record;
      // A record whose role or method is not one we know was not written by us: refuse it rather than guess.
      if (expired(record, t) || !isRole(role) || (method !== 'password' && method !== 'oidc')) {
        await backend.delete(id);
        return undefined;
      }
      let lastSeen = record.lastSeen;
      if (t - lastSeen >= touchEveryMs) {
        await backend.touch(id, t);
        lastSeen = t;
      }
      return { ...record, role, method, lastSeen, csrf: csrfOf(token) };
    },
    async destroy(token) {
      if (typeof token === 'string' && TOKEN_RE.test(token)) await backend.delete(sessionIdOf(token));
    },
    destroyUser: (user) => backend.deleteUser(user),
    destroyAll: () => backend.deleteAll(),
    purge,
    count: () => backend.count(),
  };
}

/** Session records in this process only (tests, a single dashboard that may log everyone out on restart). */
export function createMemorySessionBackend(): SessionBackend {
  const records = new Map<string, SessionRecord>();
  return {
    async insert(record) {
      // No timer: expired records go at the next purge (every login).
      records.set(record.id, { ...record });
    },
    async find(id) {
      const r = records.get(id);
      return r ? { ...r } : undefined;
    },
    async touch(id, lastSeen) {
      const r = records.get(id);
      if (r) r.lastSeen = lastSeen;
    },
    async delete(id) {
      records.delete(id);
    },
    async deleteUser(user) {
      let n = 0;
      for (const [id, r] of records) if (r.user === user) (records.delete(id), n++);
      return n;
    },
    async deleteAll() {
      const n = records.size;
      records.clear();
      return n;
    },
    async purge(seenBefore, createdBefore) {
      let n = 0;
      for (const [id, r] of records) if (r.lastSeen < seenBefore || r.createdAt < createdBefore) (records.delete(id), n++);
      return n;
    },
    count: async () => records.size,
  };
}
