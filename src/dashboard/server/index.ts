/**
 * `createDashboardServer`: the dashboard's HTTPS server (fastify) over a
 * {@link DashboardModel}. Secure by default: refuses to start without an auth
 * method, or off loopback without TLS; strict CSP with per-response nonces,
 * HSTS, no framing, no CORS; server-side sessions; CSRF token plus
 * Sec-Fetch-Site/Origin checks on every state-changing request; an
 * append-only audit log of logins and actions.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import helmet from '@fastify/helmet';
import rateLimit from '@fastify/rate-limit';
import cookie from '@fastify/cookie';
import { createHash } from 'node:crypto';
import { dashboardPolicy } from '../../config/dashboard-policy.ts';
import { ConfigError } from '../../errors.ts';
import type { DashboardModel } from '../model/types.ts';
import { registerApiRoutes } from './api-routes.ts';
import { createAuditLog, type AuditLog } from './audit-log.ts';
import { registerAuthRoutes } from './auth-routes.ts';
import type { ServerContext } from './context.ts';
import { createLoginThrottle, type ThrottleOptions } from './lockout.ts';
import type { OidcClient, OidcSettings } from './oidc.ts';
import { createSessionStore, type SessionTimeouts } from './sessions.ts';
import { createMemoryStateStore, type DashboardStateStore } from './state.ts';
import { openSqliteStateStore } from './state-sqlite.ts';
import { resolveTls, type DashboardTlsOptions } from './transport.ts';
import { registerUiRoutes } from './ui-routes.ts';
import type { UserStore } from './users.ts';

export { isLoopback, type DashboardTlsOptions } from './transport.ts';
export type { OidcSettings } from './oidc.ts';
export { openUserStore, passwordProblem } from './users.ts';
export { ROLES, type Role } from './roles.ts';
export { createMemoryStateStore, type DashboardStateStore } from './state.ts';
export { defaultSessionDbPath, openSqliteStateStore } from './state-sqlite.ts';
export { createSessionStore } from './sessions.ts';

export interface DashboardServerOptions {
  model: DashboardModel;
  /** Address to bind (default 127.0.0.1). Anything off loopback needs `tls`. */
  host?: string;
  /** Port (default 5555, Flower's); 0 picks a free one. */
  port?: number;
  /** Certificate; default a self-signed one generated at start (loopback only, with a warning). */
  tls?: DashboardTlsOptions;
  /** Local accounts (see `openUserStore`). */
  users?: UserStore;
  /** OpenID Connect login (settings, or an already-built client for tests). */
  oidc?: OidcSettings | OidcClient;
  /** Audit log path (JSON lines, append-only), or an opened log. */
  auditLog: string | AuditLog;
  /** Bearer token for `/metrics` (at least 32 characters); without it, only a logged-in session may read metrics. */
  metricsToken?: string;
  sessions?: SessionTimeouts;
  /**
   * Where sessions and lockout counters live. Default: this process's memory
   * (a restart logs everyone out and forgets lockouts). `{ sqlite: path }`
   * opens a 0600 SQLite file (`defaultSessionDbPath(usersFile)` is the CLI's
   * default), closed with the server. An opened store is shared as is (several
   * servers, tests) and left open at close.
   */
  stateStore?: DashboardStateStore | { sqlite: string };
  /** Lockout: per account (default 5 failures in 15 min lock 15 min) and per client address (default 20). */
  lockout?: { account?: Partial<ThrottleOptions>; ip?: Partial<ThrottleOptions> };
  /** Requests per minute per client address, over all routes (default 1200). */
  rateLimitPerMinute?: number;
  /** Extra origins accepted on state-changing requests (besides https://<Host header>), e.g. behind a reverse proxy. */
  allowedOrigins?: readonly string[];
  /** Trust X-Forwarded-For from these proxy addresses (default: none). */
  trustProxy?: string | string[];
  /** Where the UI files are (default: src/dashboard/ui or dist/dashboard/ui). */
  uiDir?: string;
  /** Warnings (the self-signed certificate); default stderr. */
  warn?: (line: string) => void;
}

export interface DashboardServer {
  /** The fastify instance (tests use `inject`). */
  app: FastifyInstance;
  /** `https://host:port` once listening. */
  url: string | undefined;
  listen(): Promise<string>;
  close(): Promise<void>;
  /** True when the certificate was generated at start. */
  selfSigned: boolean;
}

const STATE_CHANGING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/** Build the server (does not listen yet). */
export async function createDashboardServer(options: DashboardServerOptions): Promise<DashboardServer> {
  const host = options.host ?? '127.0.0.1';
  const warn = options.warn ?? ((line: string) => process.stderr.write(`${line}\n`));
  // The start-up rules live in config/ so `celeriac audit` applies the same ones to a deployment it reads.
  const policy = dashboardPolicy({
    host,
    tls: !options.tls ? undefined : 'selfSigned' in options.tls ? 'self-signed' : 'certFile' in options.tls ? 'files' : 'pem',
    users: options.users ? { path: options.users.path, accounts: options.users.list().length } : undefined,
    oidc: options.oidc !== undefined,
    metricsTokenLength: options.metricsToken?.length,
  });
  const refusal = policy.refusals[0];
  if (refusal) throw new ConfigError(refusal.message, { hint: refusal.fix });
  for (const w of policy.warnings) warn(`dashboard: ${w.message} (${w.id}; fix: ${w.fix})`);
  const tls = await resolveTls(host, options.tls, warn);
  // Loaded only when configured: openid-client is an ES module, which the CommonJS build reaches through require(esm) (Node ≥ 20.19).
  const oidc = options.oidc ? ('start' in options.oidc ? options.oidc : await (await import('./oidc.ts')).createOidcClient(options.oidc)) : undefined;
  const app = Fastify({
    https: { cert: tls.cert, key: tls.key, minVersion: 'TLSv1.2' },
    trustProxy: options.trustProxy ?? false,
    bodyLimit: 64 * 1024,
    logger: false,
    return503OnClosing: true,
    // Refuse what the schemas do not describe, rather than silently dropping or coercing it.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: false } },
  });
  // JSON only: a cross-site HTML form can send text/plain or urlencoded bodies without a preflight, never JSON.
  app.removeContentTypeParser(['text/plain']);

  await app.register(helmet, {
    enableCSPNonces: true,
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        defaultSrc: ["'none'"],
        scriptSrc: ["'self'"],
        styleSrc: ["'self'"],
        imgSrc: ["'self'"],
        connectSrc: ["'self'"],
        fontSrc: ["'self'"],
        formAction: ["'self'"],
        frameAncestors: ["'none'"],
        baseUri: ["'none'"],
        objectSrc: ["'none'"],
        manifestSrc: ["'self'"],
      },
    },
    strictTransportSecurity: { maxAge: 31_536_000, includeSubDomains: true },
    referrerPolicy: { policy: 'no-referrer' },
    crossOriginOpenerPolicy: { policy: 'same-origin' },
    crossOriginResourcePolicy: { policy: 'same-origin' },
    crossOriginEmbedderPolicy: { policy: 'require-corp' },
    frameguard: { action: 'deny' },
  });
  await app.register(cookie);
  await app.register(rateLimit, { max: options.rateLimitPerMinute ?? 1200, timeWindow: 60_000 });

  // Opened after the steps that can fail on bad input (TLS material in Fastify's https server), so a refusal leaves no file open.
  const ownState = !options.stateStore || 'sqlite' in options.stateStore;
  const state: DashboardStateStore = !options.stateStore ? createMemoryStateStore() : 'sqlite' in options.stateStore ? openSqliteStateStore({ path: options.stateStore.sqlite, warn }) : options.stateStore;
  const ctx: ServerContext = {
    model: options.model,
    users: options.users,
    oidc,
    audit: typeof options.auditLog === 'string' ? createAuditLog(options.auditLog) : options.auditLog,
    sessions: createSessionStore(state.sessions, options.sessions),
    accountThrottle: createLoginThrottle({ maxFailures: 5, windowMs: 15 * 60_000, lockMs: 15 * 60_000, ...options.lockout?.account, backend: state.throttles }),
    ipThrottle: createLoginThrottle({ maxFailures: 20, windowMs: 15 * 60_000, lockMs: 15 * 60_000, ...options.lockout?.ip, backend: state.throttles }),
    metricsTokenDigest: options.metricsToken ? createHash('sha256').update(options.metricsToken).digest() : undefined,
  };

  const allowedOrigins = new Set(options.allowedOrigins ?? []);
  app.addHook('onRequest', async (req, reply) => {
    // Ids, names and queues are short; a long URL is an attempt to bloat logs and the audit file.
    if (req.url.length > 4096) return reply.code(414).send({ error: 'URL too long' });
    void reply.header('permissions-policy', 'camera=(), microphone=(), geolocation=(), payment=(), usb=()');
    void reply.header('cache-control', 'no-store');
    if (!STATE_CHANGING.has(req.method)) return;
    // A browser says where a request comes from; a state-changing one must come from our own pages.
    const site = req.headers['sec-fetch-site'];
    const origin = req.headers.origin;
    const own = `https://${req.headers.host ?? ''}`;
    const siteOk = site === undefined || site === 'same-origin';
    const originOk = origin === undefined ? site === 'same-origin' : origin === own || allowedOrigins.has(origin);
    if (!siteOk || !originOk) {
      ctx.audit.write({ who: '-', what: `${req.method} ${req.url.split('?')[0]}`, from: req.ip, outcome: 'denied', detail: { reason: 'cross-origin request', origin: typeof origin === 'string' ? origin.slice(0, 200) : undefined, site: typeof site === 'string' ? site : undefined } });
      return reply.code(403).send({ error: 'cross-origin request refused', hint: 'state-changing requests must come from the dashboard itself' });
    }
  });

  registerAuthRoutes(app, ctx);
  registerApiRoutes(app, ctx);
  registerUiRoutes(app, options.uiDir);
  app.setNotFoundHandler((_req, reply) => reply.code(404).send({ error: 'not found' }));
  app.setErrorHandler((err: Error, req, reply) => {
    const status = (err as { statusCode?: number }).statusCode ?? 500;
    // Validation and client errors say what was wrong; a server error says nothing about internals.
    void reply.code(status).send(status < 500 ? { error: err.message } : { error: 'internal error' });
    if (status >= 500) warn(`dashboard: ${req.method} ${req.url.split('?')[0]} failed: ${err.message}`);
  });

  const server: DashboardServer = {
    app,
    url: undefined,
    selfSigned: tls.selfSigned,
    async listen() {
      await app.listen({ host, port: options.port ?? 5555 });
      const addr = app.server.address();
      const port = typeof addr === 'object' && addr ? addr.port : options.port;
      server.url = `https://${host.includes(':') ? `[${host}]` : host}:${port}`;
      return server.url;
    },
    async close() {
      try {
        await app.close();
      } finally {
        if (ownState) await state.close();
      }
    },
  };
  return server;
}
