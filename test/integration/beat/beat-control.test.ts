/**
 * `celeriac beat` on the control plane, as real processes on Redis: two
 * instances answer `app.control` (ping, stats, beat_status with one leader
 * and one standby), `celeriac inspect beat_status` prints them, a control
 * message signed by a foreign key gets no answer, Python Celery 5.2.6's
 * `celery inspect ping` lists both beat nodes, and after the leader stops
 * the standby reports itself leader. On RabbitMQ (state in Redis), two
 * instances on one host have a pidbox queue each and both answer, to
 * Celeriac and to Python.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { pathToFileURL } from 'node:url';
import { Redis } from 'ioredis';
import type { BeatStatusReply } from '../../../src/beat/control.ts';
import { createApp, type App } from '../../../src/index.ts';
import { generateSigningKey } from '../../../src/codec/signing/index.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { CLI, ROOT } from '../../helpers/celeriac-worker.ts';
import { runCli } from '../../helpers/control-interop.ts';
import { celeryCli, lastJson } from '../../helpers/worker-control-interop.ts';
import { hasPythonCelery, requireService, sleep } from '../../helpers/services.ts';
import { createTestVhost, hasRabbitmq, type TestVhost } from '../amqp/support/rabbit.ts';
import { redisAnswers } from '../../helpers/redis-server.ts';

const REDIS_URL = 'redis://127.0.0.1:6379/14';

const redisUp = (): Promise<boolean> => redisAnswers(REDIS_URL);

interface BeatProc {
  proc: ChildProcess;
  out(): string;
  /** The node name it logged (`beat: answering remote control as …`). */
  node(): string | undefined;
  exited: Promise<number | null>;
}

function startBeat(module: string, env: Record<string, string>, args: string[]): BeatProc {
  const proc = spawn(process.execPath, [CLI, 'beat', '-A', module, '--log-format', 'json', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], cwd: ROOT });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => proc.once('exit', (c) => r(c)));
  return { proc, out: () => out, node: () => /answering remote control as ([^"\s]+)/.exec(out)?.[1], exited };
}

async function until<T>(what: string, get: () => T | undefined | Promise<T | undefined>, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await get();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

describe('celeriac beat on the control plane (Redis, real processes)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'celeriac-beat-ctl-'));
  const ring = generateSigningKey('ed25519', 'beat-ctl-k1');
  const foreign = generateSigningKey('ed25519', 'beat-ctl-intruder');
  const ns = `beat-ctl-${randomBytes(4).toString('hex')}`;
  const queue = ns;
  const env = { CELERIAC_BROKER_URL: REDIS_URL, CELERIAC_ENV: 'development', CELERIAC_SIGNING_KEYS: ring.signingLine, CELERIAC_LOG_LEVEL: 'info', CELERIAC_UNSAFE_ALLOW_ROOT: '1' };
  let up = false;
  let a: BeatProc | undefined;
  let b: BeatProc | undefined;
  let nodes: string[] = [];
  let app: App | undefined;
  const skip = (t: TestContext): boolean => !requireService(t, up, 'Redis on 127.0.0.1:6379');

  before(async () => {
    up = await redisUp();
    if (!up) return;
    const module = join(dir, 'app.mjs');
    writeFileSync(
      module,
      `import { createApp } from ${JSON.stringify(pathToFileURL(join(ROOT, 'src', 'index.ts')).href)};\n` +
        `export const app = createApp();\n` +
        `export const beatSchedule = { tick: { task: 'tasks.tick', schedule: 0.5, options: { queue: ${JSON.stringify(queue)} } }, nightly: { task: 'tasks.report', schedule: { minute: '0', hour: '3' } } };\n`,
    );
    const args = ['--name', ns, '--lease', '2'];
    a = startBeat(module, env, args);
    await until('the first beat to lead', () => (a!.out().includes('beat: leader now') ? true : undefined));
    b = startBeat(module, env, args);
    nodes = [await until('a node name', () => a!.node()), await until('a node name', () => b!.node())];
    app = createApp({ brokerUrl: REDIS_URL, securitySigningKeys: ring.signingLine, logger: createLogger({ level: 'silent' }), env: { CELERIAC_ENV: 'development' } });
  });

  after(async () => {
    for (const p of [a, b]) if (p && p.proc.exitCode === null) p.proc.kill('SIGKILL');
    await app?.close();
    if (up) {
      const r = new Redis(REDIS_URL);
      await r.del(queue, `_kombu.binding.${queue}`, `celeriac:beat:{${ns}}:lock`, `celeriac:beat:{${ns}}:fence`, `celeriac:beat:{${ns}}:entries`);
      r.disconnect();
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('two instances are two nodes: beat.<name>.<pid>@<host>', (t) => {
    if (skip(t)) return;
    assert.equal(nodes.length, 2);
    assert.notEqual(nodes[0], nodes[1]);
    assert.match(nodes[0]!, new RegExp(`^beat\\.${ns}\\.${a!.proc.pid}@`));
    assert.match(nodes[1]!, new RegExp(`^beat\\.${ns}\\.${b!.proc.pid}@`));
  });

  it('app.control: ping lists both, stats and beat_status show one leader and one standby', async (t) => {
    if (skip(t)) return;
    const inspect = app!.control.inspect({ destination: nodes, timeoutMs: 3000 });
    assert.deepEqual(await inspect.ping(), { [nodes[0]!]: { ok: 'pong' }, [nodes[1]!]: { ok: 'pong' } });
    const stats = (await inspect.stats()) as Record<string, { beat: { role: string; fencing_token: number | null; entries: number; holder: string; leader: { holder: string; token: number } } }>;
    const [sa, sb] = [stats[nodes[0]!]!.beat, stats[nodes[1]!]!.beat];
    assert.deepEqual([sa.role, sb.role], ['leader', 'standby']);
    assert.equal(typeof sa.fencing_token, 'number');
    assert.equal(sb.fencing_token, null);
    assert.equal(sb.leader.holder, sa.holder, 'the standby names the leader from the shared store');
    assert.equal(sb.leader.token, sa.fencing_token);
    assert.equal(sa.entries, 2);
    await until('a tick sent', async () => {
      const r = (await inspect.call('beat_status'))[nodes[1]!] as BeatStatusReply | undefined;
      return r && (r.entries.find((e) => e.name === 'tick')?.total ?? 0) > 0 ? r : undefined;
    });
    const status = (await inspect.call('beat_status')) as Record<string, BeatStatusReply>;
    const [ra, rb] = [status[nodes[0]!]!, status[nodes[1]!]!];
    assert.deepEqual([ra.role, rb.role], ['leader', 'standby']);
    assert.equal(rb.leader?.holder, ra.holder);
    const tick = rb.entries.find((e) => e.name === 'tick')!;
    assert.equal(tick.task, 'tasks.tick');
    assert.ok(tick.lastTick && tick.nextRun && tick.lastTaskId);
    assert.equal(rb.entries.find((e) => e.name === 'nightly')!.total, 0);
  });

  it('celeriac inspect beat_status prints both, readable and as JSON', async (t) => {
    if (skip(t)) return;
    const text = await runCli(['inspect', 'beat_status', '-d', nodes.join(','), '-t', '3', '-b', REDIS_URL], { CELERIAC_SIGNING_KEYS: ring.signingLine });
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, new RegExp(`-> ${nodes[0]!.replace(/\./g, '\\.')}: leader \\(fencing token \\d+\\)`));
    assert.match(text.stdout, new RegExp(`-> ${nodes[1]!.replace(/\./g, '\\.')}: standby`));
    assert.match(text.stdout, /tick\n\s+task\s+tasks\.tick/);
    assert.match(text.stdout, /2 beat instances online/);
    const json = await runCli(['inspect', 'beat_status', '--json', '-d', nodes.join(','), '-t', '3', '-b', REDIS_URL], { CELERIAC_SIGNING_KEYS: ring.signingLine });
    const parsed = JSON.parse(json.stdout) as Record<string, BeatStatusReply>;
    assert.deepEqual(Object.keys(parsed).sort(), [...nodes].sort());
  });

  it('a control message signed by a foreign key gets no answer from either beat', async (t) => {
    if (skip(t)) return;
    const intruder = createApp({ brokerUrl: REDIS_URL, securitySigningKeys: foreign.signingLine, logger: createLogger({ level: 'silent' }), env: { CELERIAC_ENV: 'development' } });
    try {
      assert.deepEqual(await intruder.control.inspect({ destination: nodes, timeoutMs: 1500 }).ping(), {});
    } finally {
      await intruder.close();
    }
    assert.match(a!.out() + b!.out(), /control_denied|bad signature/);
  });

  it('Python Celery 5.2.6: celery inspect ping and stats list the beat nodes', { skip: !hasPythonCelery() && 'Python Celery is not installed' }, async (t) => {
    if (skip(t)) return;
    const pyEnv = { CELERY_BROKER_URL: REDIS_URL, CELERY_RESULT_BACKEND: REDIS_URL };
    const ping = lastJson(await celeryCli(['inspect', 'ping', '--json', '-d', nodes.join(','), '--timeout', '3'], pyEnv));
    assert.deepEqual(ping, { [nodes[0]!]: { ok: 'pong' }, [nodes[1]!]: { ok: 'pong' } });
    const stats = lastJson(await celeryCli(['inspect', 'stats', '--json', '-d', nodes[0]!, '--timeout', '3'], pyEnv)) as Record<string, { beat?: { role: string } }>;
    assert.equal(stats[nodes[0]!]?.beat?.role, 'leader');
  });

  it('when the leader stops, the standby reports itself leader', async (t) => {
    if (skip(t)) return;
    a!.proc.kill('SIGTERM');
    assert.equal(await a!.exited, 0, a!.out());
    const inspect = app!.control.inspect({ destination: [nodes[1]!], timeoutMs: 2000 });
    const r = await until('the standby to lead', async () => {
      const s = (await inspect.call('beat_status'))[nodes[1]!] as BeatStatusReply | undefined;
      return s?.role === 'leader' ? s : undefined;
    });
    assert.equal(r.leader?.holder, r.holder);
    assert.equal(r.leader?.token, r.fencingToken);
    assert.deepEqual(await app!.control.inspect({ destination: [nodes[0]!], timeoutMs: 800 }).ping(), {}, 'the stopped beat left the control plane');
  });
});

describe('celeriac beat on the control plane (RabbitMQ broker, state in Redis)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'celeriac-beat-ctl-amqp-'));
  const ns = `beat-ctl-amqp-${randomBytes(4).toString('hex')}`;
  const ready = hasRabbitmq();
  let up = false;
  let vh: TestVhost | undefined;
  const procs: BeatProc[] = [];
  let nodes: string[] = [];
  let app: App | undefined;
  const skip = (t: TestContext): boolean => !requireService(t, up, 'RabbitMQ and Redis on 127.0.0.1');

  before(async () => {
    up = ready && (await redisUp());
    if (!up) return;
    vh = await createTestVhost('beat-control');
    const module = join(dir, 'app.mjs');
    writeFileSync(
      module,
      `import { createApp } from ${JSON.stringify(pathToFileURL(join(ROOT, 'src', 'index.ts')).href)};\n` +
        `export const app = createApp();\nexport const beatSchedule = { tick: { task: 'tasks.tick', schedule: 60 } };\n`,
    );
    const env = { CELERIAC_BROKER_URL: vh.url(), CELERIAC_RESULT_BACKEND: REDIS_URL, CELERIAC_ENV: 'development', CELERIAC_LOG_LEVEL: 'info', CELERIAC_UNSAFE_ALLOW_ROOT: '1' };
    for (let i = 0; i < 2; i++) procs.push(startBeat(module, env, ['--name', ns, '--lease', '2']));
    nodes = await Promise.all(procs.map((p) => until('a node name', () => p.node())));
    app = createApp({ brokerUrl: vh.url(), logger: createLogger({ level: 'silent' }), env: { CELERIAC_ENV: 'development' } });
  });

  after(async () => {
    for (const p of procs) if (p.proc.exitCode === null) p.proc.kill('SIGKILL');
    await Promise.all(procs.map((p) => p.exited));
    await app?.close();
    await vh?.delete();
    if (up) {
      const r = new Redis(REDIS_URL);
      await r.del(`celeriac:beat:{${ns}}:lock`, `celeriac:beat:{${ns}}:fence`, `celeriac:beat:{${ns}}:entries`);
      r.disconnect();
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('each instance has its own pidbox queue: both answer ping, one leads', async (t) => {
    if (skip(t)) return;
    const inspect = app!.control.inspect({ destination: nodes, timeoutMs: 3000 });
    assert.deepEqual(await inspect.ping(), Object.fromEntries(nodes.map((n) => [n, { ok: 'pong' }])));
    const roles = await until('one leader', async () => {
      const s = (await inspect.call('beat_status')) as Record<string, BeatStatusReply>;
      const r = nodes.map((n) => s[n]?.role).sort();
      return r.join() === 'leader,standby' ? r : undefined;
    });
    assert.deepEqual(roles, ['leader', 'standby']);
  });

  it('Python Celery 5.2.6 on RabbitMQ: celery inspect ping lists both', { skip: !hasPythonCelery() && 'Python Celery is not installed' }, async (t) => {
    if (skip(t)) return;
    const ping = lastJson(await celeryCli(['inspect', 'ping', '--json', '-d', nodes.join(','), '--timeout', '3'], { CELERY_BROKER_URL: vh!.url(), CELERY_RESULT_BACKEND: REDIS_URL }));
    assert.deepEqual(ping, Object.fromEntries(nodes.map((n) => [n, { ok: 'pong' }])));
  });
});
