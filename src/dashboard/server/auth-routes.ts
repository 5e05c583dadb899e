/**
 * Login (local accounts and OIDC), logout, "log out everywhere", the current
 * user, and user administration (admins).
 */
import type { FastifyInstance, FastifyReply } from 'fastify';
import { CeleriacError } from '../../errors.ts';
import { guard, OIDC_COOKIE, SESSION_COOKIE, sessionOf, type ServerContext } from './context.ts';
import { allows, ROLES, type Role } from './roles.ts';
import type { Session } from './sessions.ts';
import { hashPassword, verifyPassword } from './users.ts';

/** Compared against when the user does not exist, so a wrong name costs the same time as a wrong password. */
const DUMMY_HASH_PROMISE = hashPassword('dummy-password-for-timing-equalisation');

function setSessionCookie(reply: FastifyReply, token: string): void {
  void reply.setCookie(SESSION_COOKIE, token, { httpOnly: true, secure: true, sameSite: 'strict', path: '/' });
}

function me(session: Session): Record<string, unknown> {
  return {
    user: session.user,
    role: session.role,
    method: session.method,
    csrf: session.csrf,
    permissions: (['read', 'operate', 'admin', 'view-clear'] as const).filter((p) => allows(session, p)),
  };
}

export function registerAuthRoutes(app: FastifyInstance, ctx: ServerContext): void {
  app.get('/api/auth-methods', async () => ({ password: ctx.users !== undefined, oidc: ctx.oidc !== undefined }));

  app.post<{ Body: { username: string; password: string } }>(
    '/api/login',
    {
      config: { rateLimit: { max: 30, timeWindow: 60_000 } },
      schema: {
        body: {
          type: 'object',
          required: ['username', 'password'],
          additionalProperties: false,
          properties: { username: { type: 'string', minLength: 1, maxLength: 64 }, password: { type: 'string', minLength: 1, maxLength: 1024 } },
        },
      },
    },
    async (req, reply) => {
      const { username, password } = req.body;
      const ip = req.ip;
      if (!ctx.users) return reply.code(404).send({ error: 'password login is not enabled', hint: 'use the single sign-on button' });
      const locked = Math.max(await ctx.accountThrottle.lockedFor(`user:${username}`), await ctx.ipThrottle.lockedFor(`ip:${ip}`));
      if (locked > 0) {
        ctx.audit.write({ who: username, what: 'login-failed', from: ip, outcome: 'denied', detail: { reason: 'locked out' } });
        return reply.code(429).header('retry-after', String(Math.ceil(locked / 1000))).send({ error: 'too many failed logins: try again later', hint: `locked for ${Math.ceil(locked / 60_000)} more minute(s)` });
      }
      const user = ctx.users.get(username);
      const ok = user && !user.disabled ? await verifyPassword(password, user.hash) : (await verifyPassword(password, await DUMMY_HASH_PROMISE), false);
      if (!ok || !user) {
        const lockedAccount = await ctx.accountThrottle.fail(`user:${username}`);
        const lockedIp = await ctx.ipThrottle.fail(`ip:${ip}`);
        ctx.audit.write({ who: username, what: 'login-failed', from: ip, outcome: 'failed', detail: { reason: 'wrong user name or password', lockedAccount, lockedIp } });
        return reply.code(401).send({ error: 'wrong user name or password' });
      }
      await ctx.accountThrottle.reset(`user:${username}`);
      // Rotation: whatever session this browser had is dropped, a new token is issued.
      await ctx.sessions.destroy(req.cookies[SESSION_COOKIE]);
      const { token, session } = await ctx.sessions.create({ user: user.name, role: user.role, viewClear: user.viewClear === true, method: 'password' });
      setSessionCookie(reply, token);
      ctx.audit.write({ who: user.name, what: 'login', from: ip, outcome: 'ok', detail: { method: 'password', role: user.role } });
      return me(session);
    },
  );

  app.get('/api/me', async (req, reply) => {
    const session = await sessionOf(ctx, req);
    if (!session) return reply.code(401).send({ error: 'not logged in' });
    return me(session);
  });

  app.post('/api/logout', async (req, reply) => {
    const session = await guard(ctx, req, reply, 'read');
    if (!session) return reply;
    await ctx.sessions.destroy(req.cookies[SESSION_COOKIE]);
    void reply.clearCookie(SESSION_COOKIE, { httpOnly: true, secure: true, sameSite: 'strict', path: '/' });
    ctx.audit.write({ who: session.user, what: 'logout', from: req.ip, outcome: 'ok' });
    return { ok: true };
  });

  app.post('/api/logout-everywhere', async (req, reply) => {
    const session = await guard(ctx, req, reply, 'read');
    if (!session) return reply;
    const n = await ctx.sessions.destroyUser(session.user);
    void reply.clearCookie(SESSION_COOKIE, { httpOnly: true, secure: true, sameSite: 'strict', path: '/' });
    ctx.audit.write({ who: session.user, what: 'logout-everywhere', from: req.ip, outcome: 'ok', detail: { sessions: n } });
    return { ok: true, sessions: n };
  });

  if (ctx.oidc) {
    const oidc = ctx.oidc;
    app.get('/auth/oidc/login', { config: { rateLimit: { max: 30, timeWindow: 60_000 } } }, async (_req, reply) => {
      const { url, handle } = await oidc.start();
      // Lax, not Strict: the provider's redirect back is a cross-site navigation, and this cookie must come with it.
      void reply.setCookie(OIDC_COOKIE, handle, { httpOnly: true, secure: true, sameSite: 'lax', path: '/', maxAge: 600 });
      return reply.redirect(url, 303);
    });
    app.get('/auth/oidc/callback', async (req, reply) => {
      const handle = req.cookies[OIDC_COOKIE];
      void reply.clearCookie(OIDC_COOKIE, { httpOnly: true, secure: true, sameSite: 'lax', path: '/' });
      const at = req.url.indexOf('?');
      try {
        const result = await oidc.finish(handle, at >= 0 ? req.url.slice(at) : '');
        await ctx.sessions.destroy(req.cookies[SESSION_COOKIE]);
        const { token } = await ctx.sessions.create({ user: result.user, role: result.role, viewClear: result.viewClear, method: 'oidc' });
        setSessionCookie(reply, token);
        ctx.audit.write({ who: result.user, what: 'login', from: req.ip, outcome: 'ok', detail: { method: 'oidc', role: result.role } });
        // A same-origin refresh, not a redirect: after the provider's cross-site redirect a
        // SameSite=Strict cookie is not sent until the browser navigates from our own page.
        return reply.type('text/html; charset=utf-8').send('<!doctype html><meta http-equiv="refresh" content="0;url=/"><title>Logged in</title><p><a href="/">Continue</a></p>');
      } catch (err) {
        ctx.audit.write({ who: '-', what: 'login-failed', from: req.ip, outcome: 'failed', detail: { method: 'oidc', reason: (err as Error).message.slice(0, 200) } });
        return reply.code(401).type('text/html; charset=utf-8').send('<!doctype html><title>Login failed</title><p>Single sign-on failed. <a href="/">Try again</a></p>');
      }
    });
  }

  // Users (admins): the local accounts file.
  app.get('/api/users', async (req, reply) => {
    if (!(await guard(ctx, req, reply, 'admin'))) return reply;
    return { enabled: ctx.users !== undefined, users: (ctx.users?.list() ?? []).map((u) => ({ name: u.name, role: u.role, viewClear: u.viewClear === true, disabled: u.disabled === true })) };
  });
  app.post<{ Body: { name: string; password: string; role: Role; viewClear?: boolean } }>(
    '/api/users',
    {
      schema: {
        body: {
          type: 'object',
          required: ['name', 'password', 'role'],
          additionalProperties: false,
          properties: { name: { type: 'string', maxLength: 64 }, password: { type: 'string', maxLength: 1024 }, role: { type: 'string', enum: [...ROLES] }, viewClear: { type: 'boolean' } },
        },
      },
    },
    async (req, reply) => {
      const session = await guard(ctx, req, reply, 'admin', { what: 'user-add', detail: { user: req.body.name } });
      if (!session) return reply;
      if (!ctx.users) return reply.code(404).send({ error: 'local accounts are not enabled', hint: 'start the dashboard with --users-file' });
      try {
        await ctx.users.add(req.body.name, req.body.password, req.body.role, { viewClear: req.body.viewClear === true });
        // A changed role or password takes effect now, not at the next login.
        await ctx.sessions.destroyUser(req.body.name);
        ctx.audit.write({ who: session.user, what: 'user-add', from: req.ip, outcome: 'ok', detail: { user: req.body.name, role: req.body.role, viewClear: req.body.viewClear === true } });
        return { ok: true };
      } catch (err) {
        ctx.audit.write({ who: session.user, what: 'user-add', from: req.ip, outcome: 'failed', detail: { user: req.body.name } });
        return reply.code(400).send({ error: err instanceof CeleriacError ? err.message : 'could not add the user' });
      }
    },
  );
  app.delete<{ Params: { name: string } }>('/api/users/:name', async (req, reply) => {
    const session = await guard(ctx, req, reply, 'admin', { what: 'user-remove', detail: { user: req.params.name } });
    if (!session) return reply;
    const target = ctx.users?.get(req.params.name);
    if (target?.role === 'admin' && !ctx.oidc && ctx.users!.list().filter((u) => u.role === 'admin' && !u.disabled).length <= 1) {
      ctx.audit.write({ who: session.user, what: 'user-remove', from: req.ip, outcome: 'denied', detail: { user: req.params.name, reason: 'last admin' } });
      return reply.code(409).send({ error: 'this is the last admin account', hint: 'add another admin first' });
    }
    const removed = ctx.users?.remove(req.params.name) ?? false;
    await ctx.sessions.destroyUser(req.params.name);
    ctx.audit.write({ who: session.user, what: 'user-remove', from: req.ip, outcome: removed ? 'ok' : 'failed', detail: { user: req.params.name } });
    return removed ? { ok: true } : reply.code(404).send({ error: 'no such user' });
  });
}
