/**
 * RabbitMQ for tests.
 *
 * - The shared node (127.0.0.1:5672, started by scripts/setup-test-services.sh):
 *   every test file gets its own vhost and a user with a random strong
 *   password (created with rabbitmqctl, password over stdin so it never
 *   shows in `ps`), deleted afterwards. Test files never see each other's
 *   queues, and nobody uses guest.
 * - Private nodes (`startPrivateNode`): a second RabbitMQ with its own node
 *   name, ports, data directory, cookie and config, bound to 127.0.0.1 and
 *   stopped by PID — for tests that stop/start the broker or need a TLS
 *   listener, so they never disturb test files running in parallel.
 */
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { freePort, hasCommand, sleep } from '../../../helpers/services.ts';

/** A random password that passes the weak-credential rules (32 url-safe characters). */
export function strongPassword(): string {
  return randomBytes(24).toString('base64url');
}

const suffix = (): string => randomBytes(4).toString('hex');

/** Directory of the real RabbitMQ scripts (Debian wraps them in /usr/sbin with `su rabbitmq`). */
function rabbitBin(): string | undefined {
  if (existsSync('/usr/lib/rabbitmq/bin/rabbitmq-server')) return '/usr/lib/rabbitmq/bin';
  const r = spawnSync('sh', ['-c', 'command -v rabbitmq-server'], { encoding: 'utf8' });
  return r.status === 0 ? dirname(r.stdout.trim()) : undefined;
}

let sharedOk: boolean | undefined;
/** True when the shared node answers `rabbitmqctl status`. */
export function hasRabbitmq(): boolean {
  if (sharedOk === undefined) {
    sharedOk = hasCommand('rabbitmqctl') && spawnSync('rabbitmqctl', ['-q', 'status'], { stdio: 'ignore', timeout: 60_000 }).status === 0;
  }
  return sharedOk;
}

/** True when a private node can be started (the server scripts are installed). */
export function canStartPrivateNode(): boolean {
  return rabbitBin() !== undefined;
}

/** Run a rabbitmqctl command; `input` goes to stdin (passwords). */
export function ctl(args: string[], opts: { input?: string; node?: PrivateNodeRef } = {}): Promise<string> {
  const bin = opts.node ? join(opts.node.bin, 'rabbitmqctl') : 'rabbitmqctl';
  const fullArgs = opts.node ? ['-n', opts.node.nodename, ...args] : args;
  const env = opts.node ? { ...process.env, HOME: opts.node.dir, ...opts.node.env } : process.env;
  return new Promise((resolve, reject) => {
    const p = execFile(bin, fullArgs, { env, timeout: 60_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`rabbitmqctl ${args[0]} failed: ${stderr || err.message}`));
      else resolve(stdout);
    });
    if (opts.input !== undefined) p.stdin?.end(opts.input);
  });
}

/** A vhost and a user of the shared (or a private) node. */
export interface TestVhost {
  vhost: string;
  user: string;
  password: string;
  host: string;
  port: number;
  /** `amqp://user:password@127.0.0.1:port/vhost` (vhost percent-encoded). */
  url(options?: { scheme?: string; port?: number; query?: string; user?: string; password?: string }): string;
  /** Add another user to this vhost with the given permissions (regexes); deleted with the vhost. */
  addUser(perm: { configure: string; write: string; read: string }): Promise<{ user: string; password: string; url: string }>;
  delete(): Promise<void>;
}

/** Create a vhost and a user with full permissions on it (only). */
export async function createTestVhost(prefix: string, node?: PrivateNodeRef): Promise<TestVhost> {
  const vhost = `celeriac-${prefix}-${suffix()}`;
  const users: string[] = [];
  const mkUser = async (perm: { configure: string; write: string; read: string }): Promise<{ user: string; password: string }> => {
    const user = `celeriac-${prefix}-${suffix()}`;
    const password = strongPassword();
    await ctl(['add_user', user], { input: password, node });
    users.push(user);
    await ctl(['set_permissions', '-p', vhost, user, perm.configure, perm.write, perm.read], { node });
    return { user, password };
  };
  await ctl(['add_vhost', vhost], { node });
  const main = await mkUser({ configure: '.*', write: '.*', read: '.*' });
  const port = node?.port ?? 5672;
  const url = (o: { scheme?: string; port?: number; query?: string; user?: string; password?: string } = {}): string =>
    `${o.scheme ?? 'amqp'}://${encodeURIComponent(o.user ?? main.user)}:${encodeURIComponent(o.password ?? main.password)}@127.0.0.1:${o.port ?? port}/${encodeURIComponent(vhost)}${o.query ? `?${o.query}` : ''}`;
  return {
    vhost,
    user: main.user,
    password: main.password,
    host: '127.0.0.1',
    port,
    url,
    async addUser(perm) {
      const u = await mkUser(perm);
      return { ...u, url: url({ user: u.user, password: u.password }) };
    },
    async delete() {
      for (const u of users) await ctl(['delete_user', u], { node }).catch(() => undefined);
      await ctl(['delete_vhost', vhost], { node }).catch(() => undefined);
    },
  };
}

/** One row of `rabbitmqctl list_queues`; `arguments` as an object, `argumentTypes` as RabbitMQ reports them (`signedint`, …). */
export interface QueueInfo {
  name: string;
  durable: boolean;
  auto_delete: boolean;
  exclusive: boolean;
  arguments: Record<string, unknown>;
  argumentTypes: Record<string, string>;
  messages: number;
  type?: string;
}

export async function listQueues(vhost: string, node?: PrivateNodeRef): Promise<QueueInfo[]> {
  const out = await ctl(['list_queues', '-p', vhost, 'name', 'durable', 'auto_delete', 'exclusive', 'arguments', 'messages', 'type', '--formatter', 'json', '-q'], { node });
  const rows = JSON.parse(out || '[]') as Array<Omit<QueueInfo, 'arguments' | 'argumentTypes'> & { arguments: Array<[string, string, unknown]> }>;
  return rows.map((r) => ({
    ...r,
    arguments: Object.fromEntries(r.arguments.map(([k, , v]) => [k, v])),
    argumentTypes: Object.fromEntries(r.arguments.map(([k, t]) => [k, t])),
  }));
}

export async function listExchanges(vhost: string, node?: PrivateNodeRef): Promise<Array<{ name: string; type: string; durable: boolean; auto_delete: boolean }>> {
  const out = await ctl(['list_exchanges', '-p', vhost, 'name', 'type', 'durable', 'auto_delete', '--formatter', 'json', '-q'], { node });
  return JSON.parse(out || '[]') as Array<{ name: string; type: string; durable: boolean; auto_delete: boolean }>;
}

export async function listBindings(vhost: string, node?: PrivateNodeRef): Promise<Array<{ source_name: string; destination_name: string; routing_key: string }>> {
  const out = await ctl(['list_bindings', '-p', vhost, 'source_name', 'destination_name', 'routing_key', '--formatter', 'json', '-q'], { node });
  return JSON.parse(out || '[]') as Array<{ source_name: string; destination_name: string; routing_key: string }>;
}

/** Connections of `user` (pid in the form close_connection takes, and the client's connection_name). */
export async function connectionsOf(user: string, node?: PrivateNodeRef): Promise<Array<{ pid: string; name: string }>> {
  // The JSON formatter prints pids as #PID<…>, which close_connection does not accept: read the plain table.
  const out = await ctl(['list_connections', 'pid', 'user', 'client_properties', '-q', '--no-table-headers'], { node });
  const rows: Array<{ pid: string; name: string }> = [];
  for (const line of out.split('\n')) {
    const [pid, u, props] = line.split('\t');
    if (!pid || u !== user) continue;
    rows.push({ pid, name: /\{"connection_name","([^"]*)"\}/.exec(props ?? '')?.[1] ?? '' });
  }
  return rows;
}

/** Close a connection by force, as an operator would. */
export async function closeConnection(pid: string, reason: string, node?: PrivateNodeRef): Promise<void> {
  await ctl(['close_connection', pid, reason], { node });
}

// ── private nodes ─────────────────────────────────────────────────────────

/** What `ctl` needs to reach a private node. */
export interface PrivateNodeRef {
  nodename: string;
  dir: string;
  bin: string;
  port: number;
  env: Record<string, string>;
}

export interface PrivateNode extends PrivateNodeRef {
  tlsPort: number | undefined;
  /** PID of the beam process (from its pid file). */
  pid(): number | undefined;
  /** Graceful stop (`rabbitmqctl stop`), then SIGKILL by PID if it lingers. */
  stop(): Promise<void>;
  /** Start again on the same data directory (durable queues and persistent messages survive). */
  start(): Promise<void>;
  /** Stop for good and remove the data directory. */
  destroy(): Promise<void>;
  log(): string;
}

export interface PrivateNodeOptions {
  /** Add a TLS listener: server certificate, key and the CA that signs client certificates. */
  tls?: { certFile: string; keyFile: string; caFile: string; verifyPeer?: boolean; failIfNoPeerCert?: boolean };
  /** Erlang cookie shared by nodes that are to form a cluster (written to the node's HOME). */
  cookie?: string;
}

/**
 * Start a private RabbitMQ node on free loopback ports. It has no guest
 * user (a random admin instead, only reachable through rabbitmqctl's
 * cookie), so tests create their own vhost and user with `createTestVhost`.
 */
export async function startPrivateNode(options: PrivateNodeOptions = {}): Promise<PrivateNode> {
  const bin = rabbitBin();
  if (!bin) throw new Error('rabbitmq-server is not installed');
  const dir = mkdtempSync(join(tmpdir(), 'celeriac-rabbit-'));
  const port = await freePort();
  const distPort = await freePort();
  const tlsPort = options.tls ? await freePort() : undefined;
  const nodename = `celeriac-${suffix()}@localhost`;
  const conf = [
    `listeners.tcp.1 = 127.0.0.1:${port}`,
    // No guest: the default user gets a random name and password nobody knows.
    `default_user = admin-${suffix()}`,
    `default_pass = ${strongPassword()}`,
    'log.console = false',
    'log.file.level = warning',
    // The test machine's disk may be small; do not block publishers for it.
    'disk_free_limit.absolute = 1MB',
  ];
  if (options.tls && tlsPort) {
    conf.push(
      `listeners.ssl.1 = 127.0.0.1:${tlsPort}`,
      `ssl_options.cacertfile = ${options.tls.caFile}`,
      `ssl_options.certfile = ${options.tls.certFile}`,
      `ssl_options.keyfile = ${options.tls.keyFile}`,
      `ssl_options.verify = ${options.tls.verifyPeer === false ? 'verify_none' : 'verify_peer'}`,
      `ssl_options.fail_if_no_peer_cert = ${options.tls.failIfNoPeerCert ? 'true' : 'false'}`,
      'ssl_options.versions.1 = tlsv1.3',
      'ssl_options.versions.2 = tlsv1.2',
    );
  }
  writeFileSync(join(dir, 'rabbitmq.conf'), `${conf.join('\n')}\n`, { mode: 0o600 });
  writeFileSync(join(dir, 'rabbitmq-env.conf'), '');
  writeFileSync(join(dir, 'enabled_plugins'), '[].\n');
  if (options.cookie) writeFileSync(join(dir, '.erlang.cookie'), options.cookie, { mode: 0o400 });
  mkdirSync(join(dir, 'log'), { recursive: true });
  const env: Record<string, string> = {
    RABBITMQ_NODENAME: nodename,
    RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
    RABBITMQ_NODE_PORT: String(port),
    RABBITMQ_DIST_PORT: String(distPort),
    RABBITMQ_CONFIG_FILE: join(dir, 'rabbitmq.conf'),
    RABBITMQ_ADVANCED_CONFIG_FILE: join(dir, 'advanced.config'),
    RABBITMQ_CONF_ENV_FILE: join(dir, 'rabbitmq-env.conf'),
    RABBITMQ_ENABLED_PLUGINS_FILE: join(dir, 'enabled_plugins'),
    RABBITMQ_MNESIA_BASE: join(dir, 'mnesia'),
    RABBITMQ_LOG_BASE: join(dir, 'log'),
    RABBITMQ_FEATURE_FLAGS_FILE: join(dir, 'feature_flags'),
    RABBITMQ_PID_FILE: join(dir, 'pid'),
    ERL_EPMD_ADDRESS: '127.0.0.1',
  };
  let proc: ChildProcess | undefined;
  let out = '';
  const ref: PrivateNodeRef = { nodename, dir, bin, port, env };
  const pid = (): number | undefined => {
    try {
      const n = Number(readFileSync(join(dir, 'pid'), 'utf8').trim());
      return Number.isInteger(n) && n > 0 ? n : undefined;
    } catch {
      return undefined;
    }
  };
  const alive = (p: number | undefined): boolean => {
    if (!p) return false;
    try {
      process.kill(p, 0);
      return true;
    } catch {
      return false;
    }
  };
  const start = async (): Promise<void> => {
    proc = spawn(join(bin, 'rabbitmq-server'), [], { env: { ...process.env, HOME: dir, ...env }, stdio: ['ignore', 'pipe', 'pipe'], cwd: dir });
    proc.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    const deadline = Date.now() + 90_000;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`private RabbitMQ exited during start:\n${out.slice(-3000)}`);
      try {
        await ctl(['await_startup', '-t', '2'], { node: ref });
        return;
      } catch {
        if (Date.now() > deadline) throw new Error(`private RabbitMQ not up after 90 s:\n${out.slice(-3000)}`);
        await sleep(300);
      }
    }
  };
  const stop = async (): Promise<void> => {
    const p = pid();
    if (!alive(p)) return;
    await ctl(['stop', join(dir, 'pid')], { node: ref }).catch(() => undefined);
    const deadline = Date.now() + 30_000;
    while (alive(p) && Date.now() < deadline) await sleep(100);
    if (alive(p)) process.kill(p!, 'SIGKILL');
    while (alive(p)) await sleep(50);
  };
  // If this process dies without cleaning up, do not leave a broker running.
  const onExit = (): void => {
    const p = pid();
    if (alive(p)) process.kill(p!, 'SIGKILL');
  };
  process.once('exit', onExit);
  await start();
  return {
    ...ref,
    tlsPort,
    pid,
    start,
    stop,
    log: () => out,
    async destroy() {
      process.off('exit', onExit);
      await stop();
      proc?.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
