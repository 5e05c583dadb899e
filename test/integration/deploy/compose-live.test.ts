/**
 * The compose recipe (deploy/compose/compose.yaml) run live, without Docker:
 * every service a local process on loopback (test/helpers/compose-recipe.ts
 * says what stands in for containers, mounts and the network).
 *
 * - deploy/README.md section 1 runs as written: its ```sh blocks, with
 *   `npx celeriac` → this checkout's CLI and the containers' names (`--host
 *   redis`, `--host rabbitmq`) → `localhost`, a name the README's own
 *   certificates carry (`DNS:localhost`), so the certificate step runs
 *   unchanged and every client verifies the server's name for real. (Not a
 *   network namespace: it needs root in CI; not `ssl_server_hostname`: it
 *   would edit every URL file.) Ports are this run's free ports.
 * - Redis runs the service's `command`; RabbitMQ the recipe's 10-tls.conf
 *   and the generated 20-admin.conf (after the image's own 10-defaults.conf,
 *   a plain listener and guest allowed off loopback, which they must
 *   override), then section 3's
 *   rabbitmq-setup.sh step; a worker, two beats and the dashboard run their
 *   `command` and `environment` as uid 10001 (Redis and RabbitMQ as 999)
 *   when the test runs as root, as Docker would.
 * - Checked live: the worker's healthcheck command, beat's tasks run and
 *   their results read with the client credentials, one beat leader, the
 *   dashboard on HTTPS only, no default Redis user, no guest, the client
 *   Redis user shut out of the replay store; then SIGTERM (compose stop):
 *   the standby beat takes over at once, and every Celeriac service exits 0
 *   inside its stop_grace_period. Everything is stopped by PID.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { Redis } from 'ioredis';
import { createApp, type App } from '../../../src/client/app.ts';
import {
  AS_SERVICE_USERS,
  CLI,
  DEPLOY,
  ROOT,
  composeUser,
  loadCompose,
  mountService,
  rabbitmqBin,
  readmeShellBlocks,
  removeTree,
  runShell,
  spawnIdentity,
  startProcess,
  startRecipeRabbit,
  substitute,
  waitForService,
  type ComposeFile,
  type MountOptions,
  type RecipeRabbit,
  type ServiceFs,
  type ServiceProcess,
} from '../../helpers/compose-recipe.ts';
import { freePort, hasCommand, requireService, waitFor } from '../../helpers/services.ts';

const ready = hasCommand('redis-server') && hasCommand('openssl') && rabbitmqBin() !== undefined;
const DASHBOARD_PASSWORD = 'correct horse battery staple, live';

/** The test's "your application": exports app and beatSchedule, reads celeriac-settings.json as the README says. */
const TASKS_JS = `// The application every recipe assumes (deploy/README.md): dist/tasks.js exports app and beatSchedule.
// It imports this checkout's source, the same module instance the CLI (bin/celeriac.mjs) runs.
import { readFileSync } from 'node:fs';
import { createApp } from ${JSON.stringify(pathToFileURL(join(ROOT, 'src', 'index.ts')).href)};

export const app = createApp({ ...JSON.parse(readFileSync(new URL('../celeriac-settings.json', import.meta.url), 'utf8')) });
export const add = app.task('tasks.add', (x, y) => x + y, { params: ['x', 'y'] });
export const beatSchedule = { 'add-every-second': { task: 'tasks.add', schedule: 1, args: [20, 22] } };
`;

interface Live {
  root: string;
  composeDir: string;
  compose: ComposeFile;
  ports: { redis: number; amqp: number; amqpPlain: number; dashboard: number };
  fs: Record<string, ServiceFs>;
  redis: ServiceProcess;
  rabbit: RecipeRabbit;
  setupOutput: string;
  worker: ServiceProcess;
  beats: ServiceProcess[];
  dashboard: ServiceProcess;
  binDir: string;
  serviceEnv: Record<string, NodeJS.ProcessEnv>;
}

/** An ioredis client over TLS to the recipe's Redis, verifying the certificate for `localhost` against the CA. */
function tlsRedis(live: Live, auth?: { username: string; password: string }): Redis {
  const r = new Redis({
    host: 'localhost',
    port: live.ports.redis,
    ...auth,
    tls: { ca: readFileSync(join(live.composeDir, 'secrets', 'ca.crt')), servername: 'localhost' },
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    enableReadyCheck: false,
    protocol: 2,
  });
  r.on('error', () => undefined);
  return r;
}

/** User and password of a generated Redis URL (as the README wrote it). */
function redisCredentials(urlFile: string): { username: string; password: string } {
  const u = new URL(readFileSync(urlFile, 'utf8').trim());
  return { username: decodeURIComponent(u.username), password: decodeURIComponent(u.password) };
}

function httpsGet(live: Live, path: string, options: { headers?: Record<string, string>; method?: string; body?: string } = {}): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: '127.0.0.1',
        port: live.ports.dashboard,
        path,
        method: options.method ?? 'GET',
        headers: options.headers,
        // The dashboard's certificate (README: CN and SAN "dashboard"), checked against the private CA.
        servername: 'dashboard',
        ca: readFileSync(join(live.composeDir, 'secrets', 'ca.crt')),
        timeout: 10_000,
      },
      (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
      },
    );
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.end(options.body);
  });
}

/** True when something accepts TCP connections on 127.0.0.1:`port`. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = netConnect({ host: '127.0.0.1', port });
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });
}

/** Start everything; on a failure, stop what started (by PID, newest first) and remove the files. */
async function setUp(): Promise<Live> {
  const root = mkdtempSync(join(tmpdir(), 'celeriac-compose-live-'));
  const cleanup: Array<() => Promise<unknown>> = [];
  try {
    return await startAll(root, cleanup);
  } catch (err) {
    for (const stop of cleanup.reverse()) await stop().catch(() => undefined);
    removeTree(root);
    throw err;
  }
}

async function startAll(root: string, cleanup: Array<() => Promise<unknown>>): Promise<Live> {
  const t0 = Date.now();
  chmodSync(root, 0o755); // the services' users traverse it, as Docker's would their mounts
  const composeDir = join(root, 'deploy', 'compose');
  mkdirSync(composeDir, { recursive: true });
  copyFileSync(join(DEPLOY, 'compose', 'compose.yaml'), join(composeDir, 'compose.yaml'));
  cpSync(join(DEPLOY, 'compose', 'rabbitmq'), join(composeDir, 'rabbitmq'), { recursive: true });

  // `celeriac` on PATH, for the README's steps and the healthcheck (the image has it on PATH).
  const binDir = join(root, 'bin');
  mkdirSync(binDir, { mode: 0o755 });
  writeFileSync(join(binDir, 'celeriac'), `#!/bin/sh\nexec '${process.execPath}' '${CLI}' "$@"\n`, { mode: 0o755 });
  const PATH = `${binDir}:${process.env.PATH ?? '/usr/bin:/bin'}`;

  // The image's /app: the application and the settings it reads.
  const appDir = join(root, 'app');
  mkdirSync(join(appDir, 'dist'), { recursive: true, mode: 0o755 });
  writeFileSync(join(appDir, 'package.json'), '{ "name": "myapp", "private": true, "type": "module" }\n', { mode: 0o644 });
  copyFileSync(join(DEPLOY, 'celeriac-settings.json'), join(appDir, 'celeriac-settings.json'));
  writeFileSync(join(appDir, 'dist', 'tasks.js'), TASKS_JS, { mode: 0o644 });

  // README section 1, as written (only the CLI, the host names and, when not root, the owners differ).
  let steps = readmeShellBlocks('1. Secrets').join('\n');
  assert.ok(readmeShellBlocks('1. Secrets').length >= 3, 'section 1 has its secrets, certificates and ownership steps');
  steps = substitute(steps, 'npx celeriac', 'celeriac');
  steps = substitute(steps, '--host redis ', '--host localhost ');
  steps = substitute(steps, '--host rabbitmq ', '--host localhost ');
  if (!AS_SERVICE_USERS) {
    // Not root: the files go to this user, who runs every service.
    const me = `${process.getuid!()}:${process.getgid!()}`;
    steps = substitute(steps, 'chown 10001:10001', `chown ${me}`);
    steps = substitute(steps, 'chown 999:999', `chown ${me}`);
  }
  runShell(steps, { cwd: root, env: { PATH, HOME: root, LANG: 'C.UTF-8' }, input: `${DASHBOARD_PASSWORD}\n` });
  const tSecrets = Date.now();

  const compose = loadCompose();
  const ports = { redis: await freePort(), amqp: await freePort(), amqpPlain: await freePort(), dashboard: await freePort() };
  const distPort = await freePort();
  const mountOpts: MountOptions = {
    root,
    appDir,
    compose,
    composeDir,
    rewrites: [
      ['localhost:6379', `localhost:${ports.redis}`],
      ['localhost:5671', `localhost:${ports.amqp}`],
    ],
  };
  const fs: Record<string, ServiceFs> = {};
  for (const name of ['redis', 'rabbitmq', 'worker', 'beat', 'dashboard']) fs[name] = mountService(name, mountOpts);

  // Redis: the service's command; only the TLS port and the paths differ, plus a loopback bind.
  const rcmd = compose.services.redis!.command!;
  assert.equal(rcmd[0], 'redis-server');
  const rargs = rcmd.slice(1).map((a) => fs.redis!.rewrite(a));
  rargs[rargs.indexOf('--tls-port') + 1] = String(ports.redis);
  rargs.push('--bind', '127.0.0.1', '-::1');
  const redis = startProcess('redis', 'redis-server', rargs, { cwd: fs.redis!.path('/data'), env: { PATH }, ...spawnIdentity(fs.redis!.svc) });
  cleanup.push(() => redis.stop(5000));

  // RabbitMQ: the recipe's 10-tls.conf (its listener on this run's port), the secret 20-admin.conf,
  // and the image's own 10-defaults.conf, which the recipe must override.
  const confd = fs.rabbitmq!.path('/etc/rabbitmq/conf.d');
  const tlsConf = join(confd, '10-tls.conf');
  writeFileSync(tlsConf, substitute(readFileSync(tlsConf, 'utf8'), 'listeners.ssl.default = 5671', `listeners.ssl.default = 127.0.0.1:${ports.amqp}`));
  assert.ok(existsSync(join(confd, '20-admin.conf')), 'the admin config is mounted where compose.yaml says');
  writeFileSync(join(confd, '10-defaults.conf'), `loopback_users.guest = false\nlisteners.tcp.default = 127.0.0.1:${ports.amqpPlain}\n`, { mode: 0o644 });
  const rabbit = await startRecipeRabbit(fs.rabbitmq!, {
    distPort,
    baseConf: 'log.console = false\nlog.file.level = warning\n# The test machine may have a small disk.\ndisk_free_limit.absolute = 1MB\n',
  });
  cleanup.push(() => rabbit.stop());
  const tBrokers = Date.now();

  // README section 3: the Celery user and its permissions, the host side piped into `sh` in the container.
  const line = readmeShellBlocks('3. Docker Compose').join('\n').split('\n').find((l) => l.includes('rabbitmq-setup.sh'));
  assert.ok(line, 'section 3 runs rabbitmq-setup.sh');
  const [hostSide, containerSide] = line.split('|').map((s) => s.trim());
  assert.equal(containerSide, 'docker compose exec -T rabbitmq sh');
  const setupScript = runShell(hostSide!, { cwd: composeDir, env: { PATH } });
  const setup = rabbit.exec(setupScript);
  assert.equal(setup.status, 0, `rabbitmq-setup.sh in the container failed:\n${setup.output}`);

  // The Celeriac services: their command and environment, as uid 10001.
  const serviceEnv: Record<string, NodeJS.ProcessEnv> = {};
  const celeriacService = (name: 'worker' | 'beat' | 'dashboard', instance: string = name): ServiceProcess => {
    const sfs = fs[name]!;
    const home = sfs.path('/tmp');
    mkdirSync(home, { recursive: true, mode: 0o700 });
    if (AS_SERVICE_USERS) chownSync(home, composeUser(sfs.svc).uid, composeUser(sfs.svc).gid);
    const args = sfs.svc.command!.map((a) => sfs.rewrite(a));
    if (name === 'dashboard') {
      // Inside its container it binds all of the container's interfaces; here the host's loopback (as published).
      args[args.indexOf('--bind') + 1] = '127.0.0.1';
      args[args.indexOf('--port') + 1] = String(ports.dashboard);
    }
    const env: NodeJS.ProcessEnv = { PATH, HOME: home, LANG: 'C.UTF-8' };
    for (const [k, v] of Object.entries(sfs.svc.environment ?? {})) env[k] = sfs.rewrite(String(v));
    serviceEnv[name] = env;
    const p = startProcess(instance, process.execPath, [CLI, ...args], { cwd: appDir, env, ...spawnIdentity(sfs.svc) });
    cleanup.push(() => p.stop(15_000));
    return p;
  };
  const worker = celeriacService('worker');
  const beats = [celeriacService('beat', 'beat-1'), celeriacService('beat', 'beat-2')];
  const dashboard = celeriacService('dashboard');
  const live: Live = { root, composeDir, compose, ports, fs, redis, rabbit, setupOutput: setup.output, worker, beats, dashboard, binDir, serviceEnv };
  await waitForService(worker, () => /worker \S+ ready/.test(worker.output()), 45_000, 'worker ready');
  for (const b of beats) await waitForService(b, () => b.output().includes('beat: starting'), 45_000, 'beat start-up');
  await waitForService(dashboard, () => httpsGet(live, '/healthz').then((r) => r.status === 200, () => false), 45_000, 'dashboard /healthz');
  const tServices = Date.now();
  console.log(`# compose-live: secrets ${tSecrets - t0} ms, brokers ${tBrokers - tSecrets} ms, celeriac services ${tServices - tBrokers} ms`);
  return live;
}

async function tearDown(live: Live): Promise<void> {
  await Promise.allSettled([live.worker, ...live.beats, live.dashboard].map((p) => p.stop(15_000)));
  await Promise.allSettled([live.redis.stop(5000), live.rabbit.stop()]);
  removeTree(live.root);
}

describe('deploy/compose: the recipe run live on loopback (no Docker)', () => {
  let live: Live | undefined;
  let client: App | undefined;

  before(async () => {
    if (!ready) return;
    live = await setUp();
  });
  after(async () => {
    await client?.close();
    if (live) await tearDown(live);
  });

  it('README section 1 made every secret file compose.yaml names, owned as its step says', (t) => {
    if (!requireService(t, ready, 'redis-server, rabbitmq-server and openssl')) return;
    for (const [name, s] of Object.entries(live!.compose.secrets)) {
      assert.ok(existsSync(join(live!.composeDir, s.file)), `secret ${name}: ${s.file}`);
    }
    assert.ok(existsSync(join(live!.composeDir, 'ca.key.offline')), 'the CA key moved off the secrets directory');
    assert.ok(!existsSync(join(live!.composeDir, 'secrets', 'ca.key')));
  });

  it('every service runs as the user compose.yaml gives it (10001 for Celeriac, 999 for the brokers)', (t) => {
    if (!requireService(t, ready, 'redis-server, rabbitmq-server and openssl')) return;
    if (!AS_SERVICE_USERS) return t.skip('not root: every service runs as this user');
    const uidOf = (pid: number): number => Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
    const want = (name: string): number => composeUser(live!.compose.services[name]!).uid;
    assert.equal(uidOf(live!.redis.pid), want('redis'));
    assert.equal(uidOf(live!.rabbit.pid()!), want('rabbitmq'));
    assert.equal(uidOf(live!.worker.pid), want('worker'));
    for (const b of live!.beats) assert.equal(uidOf(b.pid), want('beat'));
    assert.equal(uidOf(live!.dashboard.pid), want('dashboard'));
    assert.equal(want('worker'), 10001);
    assert.equal(want('redis'), 999);
  });

  it('Redis: TLS only, the default user off, the ACL users in', async (t) => {
    if (!requireService(t, ready, 'redis-server, rabbitmq-server and openssl')) return;
    const anon = tlsRedis(live!);
    await assert.rejects(anon.connect().then(() => anon.ping()), /NOAUTH/, 'a connection without a password is refused');
    anon.disconnect();
    const worker = tlsRedis(live!, redisCredentials(join(live!.composeDir, 'secrets', 'worker-backend-url')));
    await worker.connect();
    assert.equal(await worker.ping(), 'PONG');
    worker.disconnect();
    // No plain port: the TLS port does not speak plain RESP.
    const plain = new Redis({ host: '127.0.0.1', port: live!.ports.redis, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 3000 });
    plain.on('error', () => undefined);
    await assert.rejects(plain.connect().then(() => plain.ping()));
    plain.disconnect();
  });

  it('RabbitMQ: no guest user, no plain listener (despite the image defaults), the Celery user in its vhost', async (t) => {
    if (!requireService(t, ready, 'redis-server, rabbitmq-server and openssl')) return;
    const users = JSON.parse(await live!.rabbit.ctl(['list_users', '--formatter', 'json', '-q'])) as Array<{ user: string }>;
    assert.deepEqual(users.map((u) => u.user).sort(), ['celeriac-admin', 'celeriac-worker']);
    assert.equal(await listening(live!.ports.amqpPlain), false, 'listeners.tcp = none wins over the image default');
    assert.equal(await listening(live!.ports.amqp), true);
    assert.doesNotMatch(live!.setupOutput, /error/i, 'rabbitmq-setup.sh ran cleanly');
    const perms = await live!.rabbit.ctl(['list_user_permissions', 'celeriac-worker', '-q']);
    assert.match(perms, /^celeriac\t/m);
  });

  it("the worker's healthcheck command from compose.yaml passes (and fails for a worker that is not there)", async (t) => {
    if (!requireService(t, ready, 'redis-server, rabbitmq-server and openssl')) return;
    const test = live!.compose.services.worker!.healthcheck!.test;
    assert.equal(test[0], 'CMD-SHELL');
    const cmd = test[1]!.replace(/\$\$/g, '$'); // compose's escape for a literal $
    const run = (script: string) => spawnSync('sh', ['-c', script], { env: live!.serviceEnv.worker, cwd: live!.root, encoding: 'utf8', timeout: 30_000, ...spawnIdentity(live!.fs.worker!.svc) });
    const ok = run(cmd);
    assert.equal(ok.status, 0, `healthcheck failed: ${ok.stderr}`);
    const missing = run(substitute(substitute(cmd, '$(hostname)', 'no-such-host'), '-t 10', '-t 2'));
    assert.notEqual(missing.status, 0, 'the healthcheck can fail');
  });

  it("one beat leads; its tasks run on the worker; results read back with the client's credentials", async (t) => {
    if (!requireService(t, ready, 'redis-server, rabbitmq-server and openssl')) return;
    const sentIds = (b: ServiceProcess): string[] => b.logs().filter((l) => String(l.msg ?? '').startsWith('beat: sent')).map((l) => String(l.taskId));
    await waitFor(() => live!.beats.flatMap(sentIds).length >= 2, 30_000, 'two ticks sent');
    const leaders = live!.beats.filter((b) => b.output().includes('beat: leader now'));
    assert.equal(leaders.length, 1, `exactly one leader:\n${live!.beats.map((b) => b.output().slice(-1500)).join('\n---\n')}`);
    const standby = live!.beats.find((b) => b !== leaders[0])!;
    assert.deepEqual(sentIds(standby), [], 'the standby sends nothing');
    const ids = sentIds(leaders[0]!).slice(0, 2);
    await waitFor(() => ids.every((id) => live!.worker.logs().some((l) => l.msg === 'task succeeded' && l.id === id)), 30_000, 'the worker ran the ticks');
    // A producer configured as the dashboard is: the client URLs and the result keys. This test process is
    // another user than the services (root, when they run as 10001), so it reads the CA from its own copy:
    // Celeriac refuses a CA file another user could change.
    const fs = live!.fs.dashboard!;
    const ownCa = join(live!.root, 'producer-ca.crt');
    copyFileSync(fs.path('/run/secrets/ca_cert'), ownCa);
    const url = (secret: string): string => readFileSync(fs.path(`/run/secrets/${secret}`), 'utf8').trim().replace(fs.path('/run/secrets/ca_cert'), ownCa);
    client = createApp({
      brokerUrl: url('client_broker_url'),
      resultBackend: url('client_backend_url'),
      resultEncryptionKeys: readFileSync(fs.path('/run/secrets/result_keys'), 'utf8'),
      securitySigningKeys: readFileSync(fs.path('/run/secrets/signing_keys'), 'utf8'),
    });
    for (const id of ids) assert.equal(await client.asyncResult<number>(id).get({ timeoutMs: 10_000 }), 42);
  });

  it('the dashboard: HTTPS with the generated certificate, no plain HTTP, login and the audit log, /metrics behind its token', async (t) => {
    if (!requireService(t, ready, 'redis-server, rabbitmq-server and openssl')) return;
    const health = await httpsGet(live!, '/healthz');
    assert.equal(health.status, 200);
    assert.deepEqual(JSON.parse(health.body), { status: 'ok' });
    const page = await httpsGet(live!, '/');
    assert.equal(page.status, 200);
    assert.match(String(page.headers['content-type']), /text\/html/);
    // Plain HTTP to the same port gets no HTTP answer.
    await assert.rejects(
      new Promise((resolve, reject) => {
        const req = httpRequest({ host: '127.0.0.1', port: live!.ports.dashboard, path: '/healthz', timeout: 5000 }, resolve);
        req.on('error', reject);
        req.on('timeout', () => req.destroy(new Error('timeout')));
        req.end();
      }),
    );
    const body = JSON.stringify({ username: 'alice', password: DASHBOARD_PASSWORD });
    const login = await httpsGet(live!, '/api/login', { method: 'POST', body, headers: { 'content-type': 'application/json', origin: `https://127.0.0.1:${live!.ports.dashboard}` } });
    assert.equal(login.status, 200, login.body);
    // The session sees beat's lease: the leader is the beat process that logged it.
    const cookie = String((login.headers['set-cookie'] as string[] | undefined)?.[0] ?? '').split(';')[0]!;
    const beat = await httpsGet(live!, '/api/beat', { headers: { cookie } });
    assert.equal(beat.status, 200, beat.body);
    const leader = live!.beats.find((b) => b.output().includes('beat: leader now'))!;
    assert.match((JSON.parse(beat.body) as { leader?: { holder: string } }).leader?.holder ?? '', new RegExp(`:${leader.pid}:`));
    const audit = readFileSync(live!.fs.dashboard!.path('/var/lib/celeriac/dashboard-audit.jsonl'), 'utf8');
    assert.match(audit, /"what":"login"/);
    assert.equal((await httpsGet(live!, '/metrics')).status, 401);
    const token = readFileSync(join(live!.composeDir, 'secrets', 'metrics-token'), 'utf8').trim();
    assert.equal((await httpsGet(live!, '/metrics', { headers: { authorization: `Bearer ${token}` } })).status, 200);
  });

  it('the replay store: the worker wrote nonces there; the client Redis user can neither read nor test them', async (t) => {
    if (!requireService(t, ready, 'redis-server, rabbitmq-server and openssl')) return;
    // The worker's own keys, read from the append-only file in Redis's data volume (no user may list keys).
    const aofDir = live!.fs.redis!.path('/data');
    let key: string | undefined;
    await waitFor(
      () => {
        const files = readdirSync(aofDir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile());
        for (const f of files) {
          const m = /celeriac:replay:[A-Za-z0-9_\-.:]+/.exec(readFileSync(join(f.parentPath ?? f.path, f.name), 'latin1'));
          if (m) key = m[0];
        }
        return key !== undefined;
      },
      10_000,
      'a replay key in the AOF',
    );
    const worker = tlsRedis(live!, redisCredentials(join(live!.composeDir, 'secrets', 'worker-backend-url')));
    const producer = tlsRedis(live!, redisCredentials(join(live!.composeDir, 'secrets', 'client-backend-url')));
    try {
      await worker.connect();
      await producer.connect();
      assert.equal(await worker.exists(key!), 1, `the worker sees ${key}`);
      await assert.rejects(producer.get(key!), /NOPERM/);
      await assert.rejects(producer.exists(key!), /NOPERM/);
      await assert.rejects(producer.del(key!), /NOPERM/);
      // …while the same user reads results (the previous test) and beat's lease works with it.
      assert.equal(await producer.ping(), 'PONG');
    } finally {
      worker.disconnect();
      producer.disconnect();
    }
  });

  it('SIGTERM on the leading beat (compose stop) hands the lease to the standby at once', async (t) => {
    if (!requireService(t, ready, 'redis-server, rabbitmq-server and openssl')) return;
    const leader = live!.beats.find((b) => b.output().includes('beat: leader now'))!;
    const standby = live!.beats.find((b) => b !== leader)!;
    const stoppedAt = Date.now();
    assert.equal(await leader.stop(graceMs('beat')), 0, `the leader exits 0:\n${leader.output().slice(-1500)}`);
    assert.match(leader.output(), /beat: lease released/);
    // Well inside the 15 s lease: the released lease is taken on the standby's next attempt.
    await waitFor(() => standby.output().includes('beat: leader now'), 8000, 'the standby to lead');
    await waitFor(() => standby.logs().some((l) => String(l.msg ?? '').startsWith('beat: sent')), 8000, 'the standby to send');
    t.diagnostic(`standby led and sent ${Date.now() - stoppedAt} ms after SIGTERM to the leader`);
  });

  it("SIGTERM stops the worker, beat and dashboard with exit 0 inside each service's stop_grace_period", async (t) => {
    if (!requireService(t, ready, 'redis-server, rabbitmq-server and openssl')) return;
    const running = [live!.worker, ...live!.beats, live!.dashboard].filter((p) => p.proc.exitCode === null && p.proc.signalCode === null);
    const results = await Promise.all(
      running.map(async (p) => {
        const started = Date.now();
        const budget = graceMs(p.name.replace(/-\d+$/, ''));
        const how = await p.stop(budget);
        return { name: p.name, how, ms: Date.now() - started, budget, out: p.output().slice(-800) };
      }),
    );
    for (const r of results) {
      assert.equal(r.how, 0, `${r.name} exited ${String(r.how)}:\n${r.out}`);
      assert.ok(r.ms < r.budget, `${r.name} took ${r.ms} ms (stop_grace_period ${r.budget} ms)`);
    }
  });
});

/** A service's stop_grace_period in ms (compose's default is 10 s). */
function graceMs(service: string): number {
  const v = (loadCompose().services[service] as { stop_grace_period?: string } | undefined)?.stop_grace_period;
  const m = v ? /^(\d+)s$/.exec(v) : null;
  return m ? Number(m[1]) * 1000 : 10_000;
}

