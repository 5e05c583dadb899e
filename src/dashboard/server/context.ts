/**
 * What every route handler shares, and the guards they use: who is asking
 * (the server-side session), whether they may, and the audit line for it.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { DashboardModel } from '../model/types.ts';
import type { AuditLog } from './audit-log.ts';
import type { LoginThrottle } from './lockout.ts';
import type { OidcClient } from './oidc.ts';
import { allows, type Permission } from './roles.ts';
import type { Session, SessionStore } from './sessions.ts';
import type { UserStore } from './users.ts';

export const SESSION_COOKIE = '__Host-celeriac-session';
export const OIDC_COOKIE = '__Host-celeriac-oidc';

export interface ServerContext {
  model: DashboardModel;
  users: UserStore | undefined;
  oidc: OidcClient | undefined;
  audit: AuditLog;
  sessions: SessionStore;
  accountThrottle: LoginThrottle;
  ipThrottle: LoginThrottle;
  /** sha256 of the metrics bearer token, when one is configured. */
  metricsTokenDigest: Buffer | undefined;
}

/** Constant-time string comparison (through digests, so lengths do not leak). */
export function safeEqual(a: string, b: string): boolean {
  const da = createHash('sha256').update(a).digest();
  const db = createHash('sha256').update(b).digest();
  return timingSafeEqual(da, db);
}

/**
 * The live session of the request's cookie. A password session whose account
 * was removed or disabled, or whose role or view-clear grant changed, in the
 * users file (by `celeriac dashboard users` or another replica) ends here, at
 * its next request, not at its timeout.
 */
export async function sessionOf(ctx: ServerContext, req: FastifyRequest): Promise<Session | undefined> {
  const session = await ctx.sessions.get(req.cookies[SESSION_COOKIE]);
  if (session?.method === 'password' && ctx.users) {
    const account = ctx.users.get(session.user);
    if (!account || account.disabled || account.role !== session.role || (account.viewClear === true) !== session.viewClear) {
      await ctx.sessions.destroyUser(session.user);
      return undefined;
    }
  }
  return session;
}

const STATE_CHANGING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/**
 * Guard a route: a live session with `permission`, and on a state-changing
 * request the session's CSRF token in `x-csrf-token`. Sends 401/403 itself and
 * returns undefined when refused; `audited` names the action to log a refusal.
 */
export async function guard(ctx: ServerContext, req: FastifyRequest, reply: FastifyReply, permission: Permission, audited?: { what: string; detail?: Record<string, string | number | boolean | undefined> }): Promise<Session | undefined> {
  const session = await sessionOf(ctx, req);
  if (!session) {
    void reply.code(401).send({ error: 'not logged in', hint: 'log in again' });
    return undefined;
  }
  if (STATE_CHANGING.has(req.method)) {
    const token = req.headers['x-csrf-token'];
    if (typeof token !== 'string' || !safeEqual(token, session.csrf)) {
      ctx.audit.write({ who: session.user, what: audited?.what ?? `${req.method} ${req.routeOptions.url ?? req.url}`, from: req.ip, outcome: 'denied', detail: { ...audited?.detail, reason: 'missing or wrong CSRF token' } });
      void reply.code(403).send({ error: 'missing or wrong CSRF token', hint: 'reload the page' });
      return undefined;
    }
  }
  if (!allows(session, permission)) {
    if (audited || permission !== 'read') {
      ctx.audit.write({ who: session.user, what: audited?.what ?? `${req.method} ${req.routeOptions.url ?? req.url}`, from: req.ip, outcome: 'denied', detail: { ...audited?.detail, reason: `role ${session.role} lacks ${permission}` } });
    }
    void reply.code(403).send({ error: `your role (${session.role}) does not allow this`, hint: permission === 'view-clear' ? 'ask an admin for the view-clear permission' : `this needs the ${permission} permission` });
    return undefined;
  }
  return session;
}
