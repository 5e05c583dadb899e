/**
 * The one security policy: pure rules over settings, shared by start-up
 * and `celeriac audit`. It returns findings and never logs or counts:
 * callers do (`enforcePolicy` in src/observability/policy-events.ts for the
 * app's start-up and the worker; src/audit/policy-bridge.ts for the audit).
 *
 * Rules (ids from MITIGATIONS.md):
 *
 * | rule | id (broker / backend) | override |
 * | --- | --- | --- |
 * | network host without TLS (`redis://`, `amqp://`, PostgreSQL without `sslmode=verify-full`) | CEL-003 / CEL-015 | `unsafeAllowPlaintext` |
 * | TLS without certificate verification or host name check (`CERT_NONE`, `rejectUnauthorized: false`, `ssl_check_hostname: false`, `sslmode=require`/`verify-ca`, TLS < 1.2) | CEL-003 / CEL-015 | `unsafeAllowInsecureTls` |
 * | no credentials (an AMQP URL without them logs in as guest/guest) | CEL-001 / CEL-014 | `unsafeAllowNoCredentials` |
 * | known default credentials (`guest/guest`, user == password, listed passwords) | CEL-011 | `unsafeAllowDefaultCredentials` |
 * | weak password (see `weak-credentials.ts`: ≥ 16 characters, ≥ 64 bits estimated) | CEL-011 | `unsafeAllowWeakCredentials` |
 * | `acceptContent` / `resultAcceptContent` with anything but json, msgpack, auth (or application/json, application/x-msgpack, application/msgpack, application/data) | CEL-005 | `unsafeAllowContent` |
 * | `taskSerializer` not json/msgpack/auth, `resultSerializer` not json/msgpack | CEL-005 | `unsafeAllowContent` |
 *
 * Mode: from `resolveSecurityMode` (`mode.ts`): `CELERIAC_ENV`, else
 * `NODE_ENV` (`production`; `development`/`test`), else production; any
 * other value is refused.
 * In development, a loopback host (127.0.0.0/8, ::1, localhost, Unix
 * sockets) may use plaintext, insecure TLS, no/default/weak credentials:
 * each is a warning. In production every rule applies to loopback too.
 * An override turns a refusal into a warning (logged at every start); an
 * override that nothing needed is itself a warning, so stale opt-outs show.
 * `sqlite://` and `memory://` need neither TLS nor credentials; file
 * permission checks of SQLite paths come in through `fileChecks`.
 * | a destructive remote-control command (revoke, shutdown, …) obeyed without a signature (`control-settings.ts`) | CEL-022 | `unsafeAllowUnsignedControl` |
 *
 * Also warned (never refused): `taskSerializer: 'auth'` while
 * `acceptContent` still accepts unsigned json/msgpack (CEL-007).
 */
import { ConfigError } from '../errors.ts';
import { BROKER_URL_VARS, RESULT_BACKEND_VARS, settingFromEnv, type Env } from './env.ts';
import type { ResolvedSettings } from './options.ts';
import { redactAll } from './redact.ts';
import { analyzeTls } from './tls.ts';
import { isLoopbackHost, parseConnectionUrl, parseConnectionUrls, type ConnectionUrl } from './url.ts';
import { assessCredentials } from './weak-credentials.ts';
import { resolveSecurityMode, type SecurityMode } from './mode.ts';
import { controlPolicyInput, unsignedDestructiveCommands, type ControlPolicyInput } from './control-settings.ts';
import { isRpcBackendUrl } from '../core/schemes.ts';

/** Stable ids of the mitigations in MITIGATIONS.md. */
export type MitigationId =
  | 'CEL-001' | 'CEL-002' | 'CEL-003' | 'CEL-004' | 'CEL-005' | 'CEL-006' | 'CEL-007' | 'CEL-008' | 'CEL-009' | 'CEL-010' | 'CEL-011'
  | 'CEL-012' | 'CEL-013' | 'CEL-014' | 'CEL-015' | 'CEL-016' | 'CEL-017' | 'CEL-018' | 'CEL-019' | 'CEL-020' | 'CEL-021' | 'CEL-022';

export type { SecurityMode } from './mode.ts';

/**
 * The explicit opt-outs, each accepting one kind of risk for broker and
 * backend alike: `unsafeAllowPlaintext`, `unsafeAllowInsecureTls`,
 * `unsafeAllowNoCredentials`, `unsafeAllowDefaultCredentials`,
 * `unsafeAllowWeakCredentials`, `unsafeAllowContent`. Settings also take
 * Celery-style snake_case (`unsafe_allow_plaintext`) and the environment
 * `CELERIAC_UNSAFE_ALLOW_PLAINTEXT=1` etc.
 */
export const UNSAFE_OPTIONS = [
  'unsafeAllowPlaintext',
  'unsafeAllowInsecureTls',
  'unsafeAllowNoCredentials',
  'unsafeAllowDefaultCredentials',
  'unsafeAllowWeakCredentials',
  'unsafeAllowContent',
  'unsafeAllowUnsignedControl',
] as const;

/** One of {@link UNSAFE_OPTIONS}. */
export type UnsafeOption = (typeof UNSAFE_OPTIONS)[number];

/** Which opt-outs are set. */
export type UnsafeOverrides = Partial<Record<UnsafeOption, boolean>>;

/** One policy result. Messages and fixes never contain a secret. */
export interface Finding {
  id: MitigationId;
  /** The setting at fault (`brokerUrl`, `brokerUseSsl.ssl_cert_reqs`, `acceptContent`, …). */
  setting: string;
  message: string;
  fix: string;
  /** The option that accepts this risk (absent for pure warnings). */
  override?: UnsafeOption;
}

/** Refusals stop start-up; warnings are logged at every start. */
export interface PolicyReport {
  refusals: Finding[];
  warnings: Finding[];
}

/** Results of checks done elsewhere (e.g. SQLite file and directory permissions), merged into the report. */
export interface FileCheckResult {
  refusals?: readonly Finding[];
  warnings?: readonly Finding[];
}

/** Everything the policy looks at. */
export interface PolicyInput {
  mode: SecurityMode;
  /** What set the mode (`default`: neither CELERIAC_ENV nor NODE_ENV, i.e. production); only changes the wording of relaxed findings. */
  modeSource?: 'CELERIAC_ENV' | 'NODE_ENV' | 'default' | undefined;
  brokerUrl?: string | undefined;
  resultBackend?: string | undefined;
  /** Celery's `broker_use_ssl`: `true` or an object of TLS settings. */
  brokerUseSsl?: unknown;
  /** Celery's `redis_backend_use_ssl` (Redis result backend only). */
  redisBackendUseSsl?: unknown;
  taskSerializer?: string | undefined;
  resultSerializer?: string | undefined;
  acceptContent?: readonly string[] | undefined;
  resultAcceptContent?: readonly string[] | undefined;
  unsafe?: UnsafeOverrides | undefined;
  fileChecks?: FileCheckResult | undefined;
  /** Remote control: signing, allow-lists (CEL-022); absent: not judged. */
  control?: ControlPolicyInput | undefined;
  /** Further findings made elsewhere (message signing, …), merged so one report holds every refusal. */
  otherChecks?: readonly FileCheckResult[] | undefined;
}

/** Content entries that cannot run code on decode. */
const SAFE_CONTENT = new Set(['json', 'msgpack', 'auth', 'application/json', 'application/x-msgpack', 'application/msgpack', 'application/data']);
/** Entries known to execute code when decoded. */
const CODE_CONTENT = /pickle|python-serialize|yaml|x-python|marshal|dill|cloudpickle/i;

const OVERRIDE_ID: Record<UnsafeOption, MitigationId> = {
  unsafeAllowPlaintext: 'CEL-003',
  unsafeAllowInsecureTls: 'CEL-003',
  unsafeAllowNoCredentials: 'CEL-001',
  unsafeAllowDefaultCredentials: 'CEL-011',
  unsafeAllowWeakCredentials: 'CEL-011',
  unsafeAllowContent: 'CEL-005',
  unsafeAllowUnsignedControl: 'CEL-022',
};

interface Endpoint {
  setting: 'brokerUrl' | 'resultBackend';
  what: string;
  url: ConnectionUrl;
  useSsl: unknown;
  useSslSetting: string;
  transportId: MitigationId;
  authId: MitigationId;
}

class Collector {
  readonly report: PolicyReport = { refusals: [], warnings: [] };
  readonly used = new Set<UnsafeOption>();
  constructor(private readonly unsafe: UnsafeOverrides, private readonly modeSource: PolicyInput['modeSource']) {}

  /** A finding that is a warning when `relaxed` (development + loopback) or overridden, else a refusal. */
  add(f: Finding & { override: UnsafeOption }, relaxed: boolean): void {
    if (relaxed) {
      if (this.unsafe[f.override]) this.used.add(f.override); // needed in production
      // Development is only ever asked for explicitly (mode.ts), so name who asked.
      const why = this.modeSource === 'CELERIAC_ENV' || this.modeSource === 'NODE_ENV' ? `${this.modeSource} asks for development mode` : 'of development mode';
      this.report.warnings.push({ ...f, message: `${f.message} (allowed on the local machine because ${why}; refused in production, the mode unless CELERIAC_ENV=development or NODE_ENV=development|test)` });
    } else if (this.unsafe[f.override]) {
      this.used.add(f.override);
      this.report.warnings.push({ ...f, message: `${f.message} (accepted by ${f.override})` });
    } else {
      this.report.refusals.push({ ...f, fix: `${f.fix} — or set ${f.override}: true to accept the risk` });
    }
  }
}

function transportFix(url: ConnectionUrl, useSslSetting: string): string {
  switch (url.kind) {
    case 'redis':
      if (url.scheme === 'sentinel') return `set ${useSslSetting} (TLS towards the sentinels and the servers), or add ?ssl=true to the sentinel:// URLs`;
      return `use rediss://…?ssl_cert_reqs=required (with ssl_ca_certs for a private CA), or set ${useSslSetting}`;
    case 'amqp':
      return `use amqps://… (port 5671) with verification on, or set ${useSslSetting}`;
    default:
      return 'add ?sslmode=verify-full (with sslrootcert for a private CA)';
  }
}

/**
 * The user name and password the policy assesses for a URL: what the
 * connection will send. An AMQP URL with a password but no user logs in as
 * `guest` (as amqplib and Celery do), so that is the user checked.
 */
export function credentialsChecked(url: ConnectionUrl): { username: string | undefined; password: string | undefined } {
  const username = url.kind === 'amqp' && url.username === undefined && url.password !== undefined ? 'guest' : url.username;
  return { username, password: url.password };
}

function checkEndpoint(c: Collector, e: Endpoint, mode: SecurityMode): void {
  const { url } = e;
  if (url.kind === 'sqlite' || url.kind === 'memory') return;
  const local = isLoopbackHost(url.host);
  const relaxed = mode === 'development' && local;
  const where = `${e.setting} (${url.redacted})`;

  const tls = analyzeTls(url, e.useSsl, e.useSslSetting, e.setting);
  // Unix sockets never cross a network.
  if (!tls.enabled && !url.host.startsWith('/')) {
    c.add({
      id: e.transportId, setting: e.setting, override: 'unsafeAllowPlaintext',
      message: `${where} connects to ${url.host} without TLS: anyone on the network path can read and change ${e.what}`,
      fix: transportFix(url, e.useSslSetting),
    }, relaxed);
  }
  for (const weak of tls.enabled ? tls.insecure : []) {
    c.add({
      id: e.transportId, setting: weak.setting, override: 'unsafeAllowInsecureTls',
      message: `${where}: ${weak.problem}, so a man in the middle can read and change ${e.what}`,
      fix: url.kind === 'postgres' ? 'use sslmode=verify-full' : `remove ${weak.setting} (verification is on by default); give the CA with ssl_ca_certs if the server certificate comes from a private CA`,
    }, relaxed);
  }

  if (url.kind === 'postgres' && url.host.startsWith('/')) return; // peer authentication over the socket
  const checked = credentialsChecked(url);
  const cred = assessCredentials(checked.username, checked.password);
  if (!cred) return;
  const urlForm = url.kind === 'redis' ? 'rediss://USER:${file:/run/secrets/redis_password}@host:6379/0'
    : url.kind === 'amqp' ? 'amqps://USER:${file:/run/secrets/amqp_password}@host:5671/vhost'
      : 'postgres://USER:${file:/run/secrets/pg_password}@host:5432/db?sslmode=verify-full';
  const gen = url.kind === 'redis' ? 'celeriac secrets generate redis-acl' : url.kind === 'amqp' ? 'celeriac secrets generate rabbitmq-user' : 'celeriac secrets generate password';
  if (cred.problem === 'missing') {
    c.add({
      id: e.authId, setting: e.setting, override: 'unsafeAllowNoCredentials',
      message: `${where} has no credentials${url.kind === 'amqp' ? ' (the client would log in as guest/guest)' : ''}: anyone who reaches ${url.host} can ${e.setting === 'brokerUrl' ? 'inject, read or delete tasks' : 'read or forge results'}`,
      fix: `enable authentication on the server and put a user and strong password in the URL from a secret, e.g. ${urlForm}; ${gen} creates them`,
    }, relaxed);
  } else {
    const override = cred.problem === 'default' ? 'unsafeAllowDefaultCredentials' : 'unsafeAllowWeakCredentials';
    c.add({
      id: 'CEL-011', setting: e.setting, override,
      message: `${where}: ${cred.message}`,
      fix: `use a random password of at least 16 characters (celeriac secrets generate password, or ${gen}) and load it from a secret file`,
    }, relaxed);
  }
}

function checkContent(c: Collector, setting: string, list: readonly string[] | undefined): void {
  for (const entry of list ?? []) {
    const norm = entry.trim().toLowerCase();
    if (SAFE_CONTENT.has(norm)) continue;
    const code = CODE_CONTENT.test(norm);
    c.add({
      id: 'CEL-005', setting, override: 'unsafeAllowContent',
      message: `${setting} contains ${JSON.stringify(entry)}${code ? ', a format whose decoder can execute code: anyone who can write to the broker could run commands on the workers' : ', which is not a data-only format Celeriac knows'}`,
      fix: `list only json, msgpack or auth (or their MIME types) in ${setting}`,
    }, false);
  }
}

/** CEL-022: a destructive control command obeyed unsigned lets anyone who can write to the broker stop or reconfigure workers. */
function checkControl(c: Collector, control: ControlPolicyInput, mode: SecurityMode): void {
  const unsigned = unsignedDestructiveCommands(control);
  if (unsigned.length === 0) return;
  c.add({
    id: 'CEL-022', setting: control.signing ? 'workerControlAllowUnsigned' : 'workerControlAllow', override: 'unsafeAllowUnsignedControl',
    message: `remote-control command${unsigned.length === 1 ? '' : 's'} ${unsigned.join(', ')} would be obeyed without a signature${control.signing ? '' : ' (no message signing is configured, so nothing can be signed)'}: anyone who can write to the broker could stop, reconfigure or revoke on every worker`,
    fix: control.signing
      ? `remove ${unsigned.join(', ')} from workerControlAllowUnsigned (signed commands from celeriac control still work)`
      : 'configure message signing (CELERIAC_SIGNING_KEYS on operators, CELERIAC_VERIFY_KEYS on workers) and send control commands with celeriac control, or remove the destructive commands from workerControlAllow',
  }, mode === 'development');
}

/** The URLs of a Sentinel list with the first one's credentials (the ones sent to the server); other lists unchanged. */
function withListCredentials(urls: ConnectionUrl[]): ConnectionUrl[] {
  const first = urls[0]!;
  if (first.scheme !== 'sentinel') return urls;
  return urls.map((u) => ({ ...u, username: u.username ?? first.username, password: u.password ?? first.password }));
}

/** Evaluate the policy. Pure apart from parsing; throws `ConfigError` only for URLs or TLS settings it cannot parse. */
export function evaluatePolicy(input: PolicyInput): PolicyReport {
  const unsafe = input.unsafe ?? {};
  const c = new Collector(unsafe, input.modeSource);

  // A `;` list (Redis Sentinels, RabbitMQ failover nodes): every host is judged; for Sentinel the first URL
  // carries the server's credentials (as in kombu and Celery), so the others are judged with them.
  if (input.brokerUrl) {
    for (const url of withListCredentials(parseConnectionUrls(input.brokerUrl))) {
      checkEndpoint(c, {
        setting: 'brokerUrl', what: 'tasks', url, useSsl: input.brokerUseSsl,
        useSslSetting: 'brokerUseSsl', transportId: 'CEL-003', authId: 'CEL-001',
      }, input.mode);
    }
  }
  // rpc:// results travel over the broker connection: the broker's checks above are theirs.
  if (input.resultBackend && !isRpcBackendUrl(input.resultBackend)) {
    for (const url of withListCredentials(parseConnectionUrls(input.resultBackend))) {
      checkEndpoint(c, {
        setting: 'resultBackend', what: 'results', url, useSsl: url.kind === 'redis' ? input.redisBackendUseSsl : undefined,
        useSslSetting: 'redisBackendUseSsl', transportId: 'CEL-015', authId: 'CEL-014',
      }, input.mode);
    }
  }

  checkContent(c, 'acceptContent', input.acceptContent);
  checkContent(c, 'resultAcceptContent', input.resultAcceptContent);
  if (input.taskSerializer !== undefined && !['json', 'msgpack', 'auth'].includes(input.taskSerializer)) {
    c.add({
      id: 'CEL-005', setting: 'taskSerializer', override: 'unsafeAllowContent',
      message: `taskSerializer ${JSON.stringify(input.taskSerializer)} is not a data-only format`,
      fix: 'use json (default), msgpack, or auth for signed messages',
    }, false);
  }
  if (input.resultSerializer !== undefined && !['json', 'msgpack'].includes(input.resultSerializer)) {
    c.add({
      id: 'CEL-005', setting: 'resultSerializer', override: 'unsafeAllowContent',
      message: `resultSerializer ${JSON.stringify(input.resultSerializer)} is not a data-only format`,
      fix: 'use json (default) or msgpack',
    }, false);
  }
  if (input.taskSerializer === 'auth') {
    const unsigned = (input.acceptContent ?? []).filter((x) => !['auth', 'application/data'].includes(x.trim().toLowerCase()));
    if (unsigned.length > 0) {
      c.report.warnings.push({
        id: 'CEL-007', setting: 'acceptContent',
        message: `taskSerializer is auth (signed) but acceptContent also accepts unsigned ${unsigned.join(', ')}: forged unsigned tasks would still run`,
        fix: "set acceptContent: ['auth']",
      });
    }
  }

  if (input.control) checkControl(c, input.control, input.mode);

  for (const checks of [input.fileChecks, ...(input.otherChecks ?? [])]) {
    for (const f of checks?.refusals ?? []) c.report.refusals.push(f);
    for (const f of checks?.warnings ?? []) c.report.warnings.push(f);
  }

  for (const opt of UNSAFE_OPTIONS) {
    if (unsafe[opt] && !c.used.has(opt)) {
      c.report.warnings.push({
        id: OVERRIDE_ID[opt], setting: opt,
        message: `${opt} is set but no setting needs it`,
        fix: `remove ${opt}, so that a future insecure setting is refused again`,
      });
    }
  }
  return c.report;
}

// ── PostgreSQL: how the server authenticated us (issue 22) ─────────────

/**
 * How a PostgreSQL server let a connection in, as the engine observed it
 * during the handshake: SCRAM (`scram-sha-256`, the only password method
 * that never shows the server something replayable), `md5` (a captured
 * hash logs in as the user), `password` (cleartext), or `none` (the server
 * asked for nothing: `trust`, or `cert` when a client certificate was sent).
 */
export type PostgresAuthMethod = 'scram-sha-256' | 'md5' | 'password' | 'none';

/** What {@link evaluatePostgresAuth} judges. */
export interface PostgresAuthInput {
  setting: 'brokerUrl' | 'resultBackend';
  /** The server's URL (only its redacted form and host are used). */
  url: string;
  method: PostgresAuthMethod;
  /** A client certificate was presented over verified TLS (then `none` means `cert` authentication). */
  clientCertificate: boolean;
  mode: SecurityMode;
  modeSource?: PolicyInput['modeSource'];
  unsafe?: UnsafeOverrides | undefined;
}

/**
 * The policy's verdict on a PostgreSQL authentication method (pure; the
 * engine supplies what the server asked for at connect, which no static
 * check can know). SCRAM, or a client certificate, passes; md5 and
 * cleartext are refused (`unsafeAllowWeakCredentials`), and a server that
 * asks for nothing (`trust`) is refused (`unsafeAllowNoCredentials`) —
 * both warnings only on loopback in development, like the URL rules.
 */
export function evaluatePostgresAuth(input: PostgresAuthInput): PolicyReport {
  const c = new Collector(input.unsafe ?? {}, input.modeSource);
  if (input.method === 'scram-sha-256' || (input.method === 'none' && input.clientCertificate)) return c.report;
  const url = parseConnectionUrl(input.url);
  // Over a Unix socket, `none` is peer authentication: the kernel vouches for the OS user.
  if (input.method === 'none' && url.host.startsWith('/')) return c.report;
  const relaxed = input.mode === 'development' && isLoopbackHost(url.host);
  const where = `${input.setting} (${url.redacted})`;
  const id: MitigationId = input.setting === 'brokerUrl' ? 'CEL-001' : 'CEL-014';
  if (input.method === 'none') {
    c.add({
      id, setting: input.setting, override: 'unsafeAllowNoCredentials',
      message: `${where}: the PostgreSQL server let Celeriac in without asking for a password (trust authentication): anyone who reaches ${url.host} can ${input.setting === 'brokerUrl' ? 'inject, read or delete tasks' : 'read or forge results'}`,
      fix: 'use scram-sha-256 for this role in pg_hba.conf, store its password as a SCRAM verifier and make it strong (celeriac secrets generate postgres-roles writes the SQL)',
    }, relaxed);
  } else {
    c.add({
      id: 'CEL-011', setting: input.setting, override: 'unsafeAllowWeakCredentials',
      message: `${where}: the PostgreSQL server asked for the password with ${input.method === 'md5' ? 'md5 (whoever reads the stored hash or one handshake can log in as this role)' : 'cleartext password authentication'}, not SCRAM`,
      fix: 'use scram-sha-256 in pg_hba.conf, switch the server to SCRAM verifiers (the password_encryption setting) and set the role\'s password again',
    }, relaxed);
  }
  return c.report;
}

/** The start-up refusal: a `ConfigError` that lists every refused setting. */
export class InsecureConfigError extends ConfigError {
  readonly findings: readonly Finding[];
  constructor(findings: readonly Finding[]) {
    const lines = findings.map((f) => `  [${f.id}] ${f.setting}\n      ${f.message}\n      fix: ${f.fix}`);
    super(redactAll(`refusing to start: ${findings.length} insecure setting${findings.length === 1 ? '' : 's'} (all of them are listed)\n${lines.join('\n')}`), {
      code: 'ERR_INSECURE_CONFIG',
      hint: findings.length === 1 ? 'apply the fix above, then start again' : `apply the fix under each of the ${findings.length} settings above, then start again`,
    });
    this.findings = findings.map((f) => ({ ...f, message: redactAll(f.message), fix: redactAll(f.fix) }));
  }
}

/**
 * Evaluate the policy and throw an {@link InsecureConfigError} listing every
 * refusal. Pure: logging the warnings and counting refusals is the
 * caller's (`enforcePolicy` in src/observability/policy-events.ts).
 * Returns the report when nothing is refused.
 */
export function checkPolicy(input: PolicyInput): PolicyReport {
  const report = evaluatePolicy(input);
  if (report.refusals.length > 0) throw new InsecureConfigError(report.refusals);
  return report;
}

function flag(v: unknown, name: string): boolean | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'boolean') return v;
  if (typeof v === 'string' && /^(1|true|yes|on)$/i.test(v.trim())) return true;
  if (typeof v === 'string' && /^(0|false|no|off|)$/i.test(v.trim())) return false;
  throw new ConfigError(`${name} must be true or false`, { hint: `set ${name}: true only to accept the risk it names` });
}

/** Environment variable for an unsafe option: `unsafeAllowPlaintext` → `CELERIAC_UNSAFE_ALLOW_PLAINTEXT`. */
export function unsafeEnvName(option: UnsafeOption): string {
  return `CELERIAC_${option.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
}

/**
 * Build the policy input from resolved app settings: URLs (falling back to
 * the environment, like the app does), `brokerUseSsl` / `redisBackendUseSsl`
 * (the `tls` section) and `unsafe…` options (the `unsafe` section, else
 * `CELERIAC_UNSAFE_…` variables), serializers and accept lists, and the
 * mode from `CELERIAC_ENV`/`NODE_ENV` (a value outside their sets throws `ConfigError`).
 */
export function policyInputFromSettings(settings: ResolvedSettings, env: Env = process.env): PolicyInput {
  const unsafe: UnsafeOverrides = {};
  for (const opt of UNSAFE_OPTIONS) {
    const v = settings.unsafe[opt] ?? flag(env[unsafeEnvName(opt)], unsafeEnvName(opt));
    if (v) unsafe[opt] = true;
  }
  const mode = resolveSecurityMode(env);
  return {
    mode: mode.mode,
    modeSource: mode.source,
    brokerUrl: settings.brokerUrl ?? settingFromEnv(env, BROKER_URL_VARS),
    resultBackend: settings.resultBackend ?? settingFromEnv(env, RESULT_BACKEND_VARS),
    brokerUseSsl: settings.tls.brokerUseSsl,
    redisBackendUseSsl: settings.tls.redisBackendUseSsl,
    taskSerializer: settings.taskSerializer,
    resultSerializer: settings.resultSerializer,
    acceptContent: settings.acceptContent,
    resultAcceptContent: settings.resultAcceptContent,
    unsafe,
    control: controlPolicyInput({ ...settings.security, taskSerializer: settings.taskSerializer }, env),
  };
}
