/**
 * `celeriac dashboard`: the web monitor (workers, tasks, queues, charts,
 * actions by role, audit log) over HTTPS, and `celeriac dashboard users` to
 * manage its local accounts.
 */
import { existsSync, readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { ConfigError } from '../errors.ts';
import { dashboardPolicy } from '../config/dashboard-policy.ts';
import { createDashboardModel } from '../dashboard/model/index.ts';
import type { DashboardModel } from '../dashboard/model/types.ts';
import { createDashboardServer, createSessionStore, defaultSessionDbPath, openSqliteStateStore, openUserStore, ROLES, type DashboardStateStore, type DashboardTlsOptions, type OidcSettings, type Role } from '../dashboard/server/index.ts';
import { applyConnectionFlags, CONNECTION_FLAGS, CONNECTION_HELP } from './flags.ts';
import { appFromArgs } from './load-app.ts';
import { Exit, println, reportError, type CliIo } from './io.ts';
import type { App } from '../client/app.ts';
import { openDashboardStateStore } from '../client/dashboard-state.ts';

export const DASHBOARD_HELP = `Usage: celeriac dashboard [options]
       celeriac dashboard users add <name> --role <viewer|operator|admin> [--view-clear] --users-file <path>
       celeriac dashboard users list|remove <name> --users-file <path>
       celeriac dashboard sessions revoke <name>|--all --users-file <path> [--session-store ...]

The web monitor: live workers, tasks, queues and charts; actions by role
(viewer reads; operator revokes, rate-limits, retries, redrives, pauses;
admin shuts down, resizes pools, manages consumers and users), each written
to an append-only audit log. HTTPS only; refuses to start without an
authentication method, and off loopback without a certificate.

Authentication (at least one):
      --users-file <path>          local accounts (create with "dashboard users add")
      --oidc-issuer <url>          OpenID Connect provider (https)
      --oidc-client-id <id>
      --oidc-client-secret-file <path>
      --oidc-redirect-uri <url>    default https://<bind>:<port>/auth/oidc/callback
      --oidc-role-claim <claim>    default groups
      --oidc-role <value=role>     map a claim value to viewer|operator|admin|view-clear (repeat)

Transport:
      --bind <address>             default 127.0.0.1 (off loopback needs --tls-cert/--tls-key)
      --port <n>                   default 5555
      --tls-cert <file>            certificate chain (PEM)
      --tls-key <file>             private key (PEM)
      --tls-self-signed            generate a certificate even off loopback (browsers will warn)
      --trust-proxy <address>      take the client address from X-Forwarded-For sent by this proxy
      --allowed-origin <origin>    extra origin for state-changing requests (behind a proxy; repeat)

Other:
      --audit-log <path>           default ./celeriac-dashboard-audit.jsonl
      --metrics-token-file <path>  bearer token for /metrics (else /metrics needs a login)
      --queue <name>               show this queue before any worker consumes it (repeat)
      --store <memory|sqlite:path> task history (default memory)
      --max-tasks <n>              task history cap
      --beat-name <name>           celeriac beat schedule shown in the Beat view (default default)
      --beat-state-url <url>       where that beat keeps its state, when not on the broker/backend
      --session-idle <minutes>     default 30
      --session-max <minutes>     default 720
      --session-store <memory|sqlite:path|redis>
                                   sessions and lockout counters (default: sqlite
                                   beside the users file, <name>.sessions.db: a
                                   restart keeps them, dashboards on this host
                                   share them; redis: on the app's Redis broker or
                                   backend, shared across hosts; memory without a
                                   users file)
  -A, --app <module>               module exporting the app
${CONNECTION_HELP}
  -h, --help                       show this help`;

const FLAGS = {
  ...CONNECTION_FLAGS,
  app: { type: 'string', short: 'A' },
  help: { type: 'boolean', short: 'h' },
  bind: { type: 'string' },
  port: { type: 'string' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  'tls-self-signed': { type: 'boolean' },
  'trust-proxy': { type: 'string' },
  'allowed-origin': { type: 'string', multiple: true },
  'users-file': { type: 'string' },
  'oidc-issuer': { type: 'string' },
  'oidc-client-id': { type: 'string' },
  'oidc-client-secret-file': { type: 'string' },
  'oidc-redirect-uri': { type: 'string' },
  'oidc-role-claim': { type: 'string' },
  'oidc-role': { type: 'string', multiple: true },
  'audit-log': { type: 'string' },
  'metrics-token-file': { type: 'string' },
  queue: { type: 'string', multiple: true },
  store: { type: 'string' },
  'max-tasks': { type: 'string' },
  'beat-name': { type: 'string' },
  'beat-state-url': { type: 'string' },
  'session-idle': { type: 'string' },
  'session-max': { type: 'string' },
  'session-store': { type: 'string' },
  all: { type: 'boolean' },
  role: { type: 'string' },
  'view-clear': { type: 'boolean' },
} as const;

function readSecret(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch (err) {
    throw new ConfigError(`cannot read the ${what} file ${path}`, { hint: 'check the path and its permissions', cause: err });
  }
}

function positiveInt(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new ConfigError(`${flag} must be a positive whole number`, { hint: `e.g. ${flag} 30` });
  return n;
}

/** Read a password: hidden from a terminal, or the first line of stdin in a script. */
async function readPassword(io: CliIo & { stdin?: NodeJS.ReadableStream & { isTTY?: boolean; setRawMode?: (on: boolean) => void } }, prompt: string): Promise<string> {
  const stdin = io.stdin ?? (process.stdin as NodeJS.ReadableStream & { isTTY?: boolean; setRawMode?: (on: boolean) => void });
  if (!stdin.isTTY) {
    const chunks: Buffer[] = [];
    for await (const c of stdin) chunks.push(Buffer.from(c as Buffer));
    return Buffer.concat(chunks).toString('utf8').split(/\r?\n/)[0] ?? '';
  }
  io.stderr.write(prompt);
  stdin.setRawMode?.(true);
  stdin.resume();
  return new Promise((resolve, reject) => {
    let value = '';
    const onData = (d: Buffer): void => {
      for (const ch of d.toString('utf8')) {
        if (ch === '\r' || ch === '\n') return done(value);
        if (ch === '\u0003') return done(undefined);
        if (ch === '\u007f') value = value.slice(0, -1);
        else value += ch;
      }
    };
    const done = (v: string | undefined): void => {
      stdin.removeListener('data', onData);
      stdin.setRawMode?.(false);
      stdin.pause();
      io.stderr.write('\n');
      if (v === undefined) reject(new ConfigError('cancelled', { hint: 'run the command again' }));
      else resolve(v);
    };
    stdin.on('data', onData);
  });
}

/** Where sessions and lockout counters live (see `--session-store`). */
type SessionStoreChoice = { kind: 'memory' } | { kind: 'sqlite'; path: string } | { kind: 'redis' };

/**
 * `--session-store`: `memory`, `sqlite:<path>`, `redis` (the app's Redis
 * broker or result backend); by default the SQLite file beside the users
 * file, or memory without one.
 */
function sessionStoreChoice(values: Record<string, unknown>): SessionStoreChoice {
  const flag = values['session-store'] as string | undefined;
  if (flag === 'memory' || flag === 'redis') return { kind: flag };
  if (flag !== undefined) {
    if (!flag.startsWith('sqlite:') || flag.length === 7) throw new ConfigError(`--session-store ${flag} is not memory, sqlite:<path> or redis`, { hint: 'e.g. --session-store sqlite:/var/lib/celeriac/dashboard-sessions.db' });
    return { kind: 'sqlite', path: flag.slice(7) };
  }
  const users = values['users-file'] as string | undefined;
  return users ? { kind: 'sqlite', path: defaultSessionDbPath(users) } : { kind: 'memory' };
}

/** The app of `-A` with the connection flags applied (for `--session-store redis`). */
async function loadAppFor(values: Record<string, unknown>, io: CliIo): Promise<App> {
  applyConnectionFlags(values as { broker?: string; 'result-backend'?: string }, io);
  return (await appFromArgs(values.app as string | undefined, io.cwd)).app;
}

/**
 * End sessions in the session store a running dashboard shares: one user's,
 * or everyone's. Undefined when there is none to reach from outside the
 * dashboard process (memory, or no dashboard has created the SQLite file yet).
 */
async function revokeSessions(values: Record<string, unknown>, io: CliIo, who: { user: string } | 'all'): Promise<number | undefined> {
  const choice = sessionStoreChoice(values);
  if (choice.kind === 'memory' || (choice.kind === 'sqlite' && !existsSync(choice.path))) return undefined;
  let app: App | undefined;
  try {
    const state = choice.kind === 'redis' ? await openDashboardStateStore((app = await loadAppFor(values, io))) : openSqliteStateStore({ path: choice.path, warn: (line) => println(io.stderr, line) });
    try {
      const sessions = createSessionStore(state.sessions);
      return who === 'all' ? await sessions.destroyAll() : await sessions.destroyUser(who.user);
    } finally {
      await state.close();
    }
  } finally {
    await app?.close();
  }
}

async function sessionsCommand(positionals: string[], values: Record<string, unknown>, io: CliIo): Promise<number> {
  const [sub, name] = positionals;
  const all = values.all === true;
  if (sub !== 'revoke' || (name === undefined) === !all) {
    println(io.stderr, `error: expected "sessions revoke <name>" or "sessions revoke --all"\n\n${DASHBOARD_HELP}`);
    return Exit.USAGE;
  }
  const choice = sessionStoreChoice(values);
  if (choice.kind === 'memory') {
    println(io.stderr, 'error: --users-file <path>, --session-store sqlite:<path> or --session-store redis is required (sessions kept in memory end when that dashboard stops)');
    return Exit.USAGE;
  }
  const n = await revokeSessions(values, io, all ? 'all' : { user: name! });
  println(io.stdout, n === undefined ? `no session store at ${choice.kind === 'sqlite' ? choice.path : 'redis'}: no sessions to end` : `ended ${n} session(s)${all ? '' : ` of ${name}`}`);
  return Exit.OK;
}

async function usersCommand(positionals: string[], values: Record<string, unknown>, io: CliIo): Promise<number> {
  const [sub, name] = positionals;
  const path = values['users-file'] as string | undefined;
  if (!path) {
    println(io.stderr, 'error: --users-file <path> is required');
    return Exit.USAGE;
  }
  const store = openUserStore(path);
  if (sub === 'list') {
    for (const u of store.list()) println(io.stdout, `${u.name}\t${u.role}${u.viewClear ? '\tview-clear' : ''}`);
    return Exit.OK;
  }
  if (sub === 'remove' && name) {
    if (!store.remove(name)) {
      println(io.stderr, `error: no user ${name} in ${path}`);
      return Exit.ERROR;
    }
    const ended = await revokeSessions(values, io, { user: name });
    println(io.stdout, ended === undefined
      ? `removed ${name}: a running dashboard refuses their next login and ends their open sessions at their next request`
      : `removed ${name} and ended ${ended} open session(s)`);
    return Exit.OK;
  }
  if (sub === 'add' && name) {
    const role = values.role as string | undefined;
    if (!role || !(ROLES as readonly string[]).includes(role)) {
      println(io.stderr, `error: --role must be one of ${ROLES.join(', ')}`);
      return Exit.USAGE;
    }
    const password = await readPassword(io, `Password for ${name} (16+ characters, not echoed): `);
    await store.add(name, password, role as Role, { viewClear: values['view-clear'] === true });
    // A changed password or role takes effect now: sessions opened with the old one end.
    const ended = await revokeSessions(values, io, { user: name });
    println(io.stdout, `saved ${name} (${role}${values['view-clear'] ? ', view-clear' : ''}) to ${path}${ended ? `; ended ${ended} open session(s)` : ''}`);
    return Exit.OK;
  }
  println(io.stderr, `error: expected "users add <name> --role <role>", "users list" or "users remove <name>"\n\n${DASHBOARD_HELP}`);
  return Exit.USAGE;
}

export async function runDashboardCommand(argv: string[], io: CliIo): Promise<number> {
  let values: Record<string, unknown>;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({ args: argv, options: FLAGS, allowPositionals: true, strict: true }));
  } catch (err) {
    println(io.stderr, `error: ${(err as Error).message}\n\n${DASHBOARD_HELP}`);
    return Exit.USAGE;
  }
  if (values.help) {
    println(io.stdout, DASHBOARD_HELP);
    return Exit.OK;
  }
  try {
    if (positionals[0] === 'users') return await usersCommand(positionals.slice(1), values, io);
    if (positionals[0] === 'sessions') return await sessionsCommand(positionals.slice(1), values, io);
    if (positionals.length) {
      println(io.stderr, `error: unexpected ${JSON.stringify(positionals[0])}\n\n${DASHBOARD_HELP}`);
      return Exit.USAGE;
    }
    return await serve(values, io);
  } catch (err) {
    return reportError(io, err);
  }
}

async function serve(v: Record<string, unknown>, io: CliIo): Promise<number> {
  const s = (k: string): string | undefined => v[k] as string | undefined;
  const host = s('bind') ?? '127.0.0.1';
  const port = s('port') !== undefined ? Number(s('port')) : 5555;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ConfigError('--port must be 0-65535', { hint: 'e.g. --port 5555' });
  let tls: DashboardTlsOptions | undefined;
  if (s('tls-cert') || s('tls-key')) {
    if (!s('tls-cert') || !s('tls-key')) throw new ConfigError('--tls-cert and --tls-key go together', { hint: 'pass both, the certificate chain and its private key' });
    tls = { certFile: s('tls-cert')!, keyFile: s('tls-key')! };
  } else if (v['tls-self-signed']) tls = { selfSigned: true };
  let oidc: OidcSettings | undefined;
  if (s('oidc-issuer')) {
    if (!s('oidc-client-id')) throw new ConfigError('--oidc-issuer needs --oidc-client-id', { hint: 'the client id registered at your provider' });
    const roleMap: OidcSettings['roleMap'] = {};
    for (const pair of (v['oidc-role'] as string[] | undefined) ?? []) {
      const at = pair.lastIndexOf('=');
      const role = pair.slice(at + 1);
      if (at <= 0 || !['viewer', 'operator', 'admin', 'view-clear'].includes(role)) throw new ConfigError(`--oidc-role ${pair} is not value=role`, { hint: 'e.g. --oidc-role celeriac-admins=admin' });
      roleMap[pair.slice(0, at)] = role as Role | 'view-clear';
    }
    if (Object.keys(roleMap).length === 0) throw new ConfigError('OIDC needs at least one --oidc-role', { hint: 'map a group to a role, e.g. --oidc-role celeriac-operators=operator' });
    oidc = {
      issuer: s('oidc-issuer')!,
      clientId: s('oidc-client-id')!,
      clientSecret: s('oidc-client-secret-file') ? readSecret(s('oidc-client-secret-file')!, 'OIDC client secret') : undefined,
      redirectUri: s('oidc-redirect-uri') ?? `https://${host.includes(':') ? `[${host}]` : host}:${port}/auth/oidc/callback`,
      roleClaim: s('oidc-role-claim'),
      roleMap,
    };
  }
  const users = s('users-file') ? openUserStore(s('users-file')!) : undefined;
  const sessionStore = sessionStoreChoice(v);
  const store = s('store');
  const maxTasks = positiveInt(s('max-tasks'), '--max-tasks');
  let app: App | undefined;
  let model: DashboardModel | undefined;
  let state: DashboardStateStore | undefined;
  const abort = new AbortController();
  try {
    // Checked before connecting: no auth or no TLS off loopback fails fast, without touching the broker.
    const metricsToken = s('metrics-token-file') ? readSecret(s('metrics-token-file')!, 'metrics token') : undefined;
    const refusal = dashboardPolicy({
      host, tls: tls ? ('selfSigned' in tls ? 'self-signed' : 'files') : undefined,
      users: users ? { path: users.path, accounts: users.list().length } : undefined, oidc: oidc !== undefined, metricsTokenLength: metricsToken?.length,
    }).refusals[0];
    if (refusal) throw new ConfigError(refusal.message, { hint: refusal.fix });
    applyConnectionFlags(v as { broker?: string; 'result-backend'?: string }, io);
    ({ app } = await appFromArgs(s('app'), io.cwd));
    if (sessionStore.kind === 'redis') state = await openDashboardStateStore(app);
    model = await createDashboardModel({
      app,
      queues: (v.queue as string[] | undefined) ?? [],
      store: store?.startsWith('sqlite:') ? { kind: 'sqlite', path: store.slice(7), maxTasks } : { kind: 'memory', maxTasks },
      beat: { ...(s('beat-name') ? { namespace: s('beat-name') } : {}), ...(s('beat-state-url') ? { stateUrl: s('beat-state-url') } : {}) },
      signal: abort.signal,
    });
    const server = await createDashboardServer({
      model, host, port, tls, users, oidc,
      auditLog: s('audit-log') ?? 'celeriac-dashboard-audit.jsonl',
      metricsToken,
      sessions: { idleMs: (positiveInt(s('session-idle'), '--session-idle') ?? 30) * 60_000, absoluteMs: (positiveInt(s('session-max'), '--session-max') ?? 720) * 60_000 },
      ...(sessionStore.kind === 'sqlite' ? { stateStore: { sqlite: sessionStore.path } } : state ? { stateStore: state } : {}),
      trustProxy: s('trust-proxy'),
      allowedOrigins: (v['allowed-origin'] as string[] | undefined) ?? [],
      warn: (line) => println(io.stderr, line),
    });
    const url = await server.listen();
    println(io.stdout, `celeriac dashboard on ${url}/ (Ctrl-C to stop)`);
    println(io.stdout, sessionStore.kind === 'memory' ? 'sessions and lockouts in memory: a restart logs everyone out (--session-store sqlite:<path> or redis keeps them)' : `sessions and lockouts in ${sessionStore.kind === 'sqlite' ? sessionStore.path : state?.location}`);
    await new Promise<void>((resolve) => {
      const stop = (): void => resolve();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
    await server.close();
    return Exit.OK;
  } finally {
    abort.abort();
    await model?.close().catch(() => {});
    await state?.close();
    await app?.close();
  }
}
