/**
 * Server-side sessions: the cookie carries only a random id (256 bits); who
 * the user is, their role and their CSRF token live here. Idle and absolute
 * timeouts; a new id on every login (no fixation); "log out everywhere"
 * drops every session of a user.
 */
import { randomBytes } from 'node:crypto';
import type { Role } from './roles.ts';

export interface Session {
  id: string;
  user: string;
  role: Role;
  viewClear: boolean;
  /** How the user logged in. */
  method: 'password' | 'oidc';
  /** Synchronizer token: every state-changing request must echo it in `x-csrf-token` (or the form field `_csrf`). */
  csrf: string;
  createdAt: number;
  lastSeen: number;
}

export interface SessionStore {
  create(fields: Pick<Session, 'user' | 'role' | 'viewClear' | 'method'>): Session;
  /** The live session for `id` (touching it), or undefined when missing or timed out. */
  get(id: string | undefined): Session | undefined;
  destroy(id: string): void;
  /** Drop every session of `user`; returns how many. */
  destroyUser(user: string): number;
  count(): number;
}

export interface SessionTimeouts {
  /** Idle timeout, ms (default 30 minutes). */
  idleMs?: number;
  /** Absolute lifetime, ms (default 12 hours). */
  absoluteMs?: number;
  /** Clock, for tests. */
  now?: () => number;
}

export function createSessionStore(options: SessionTimeouts = {}): SessionStore {
  const idleMs = options.idleMs ?? 30 * 60_000;
  const absoluteMs = options.absoluteMs ?? 12 * 3_600_000;
  const now = options.now ?? Date.now;
  const sessions = new Map<string, Session>();
  const expired = (s: Session, t: number): boolean => t - s.lastSeen > idleMs || t - s.createdAt > absoluteMs;
  const sweep = (): void => {
    const t = now();
    for (const [id, s] of sessions) if (expired(s, t)) sessions.delete(id);
  };
  return {
    create(fields) {
      if (sessions.size > 10_000) sweep();
      const t = now();
      const session: Session = { ...fields, id: randomBytes(32).toString('base64url'), csrf: randomBytes(32).toString('base64url'), createdAt: t, lastSeen: t };
      sessions.set(session.id, session);
      return session;
    },
    get(id) {
      if (!id) return undefined;
      const s = sessions.get(id);
      if (!s) return undefined;
      const t = now();
      if (expired(s, t)) {
        sessions.delete(id);
        return undefined;
      }
      s.lastSeen = t;
      return s;
    },
    destroy(id) {
      sessions.delete(id);
    },
    destroyUser(user) {
      let n = 0;
      for (const [id, s] of sessions) if (s.user === user) (sessions.delete(id), n++);
      return n;
    },
    count: () => sessions.size,
  };
}
