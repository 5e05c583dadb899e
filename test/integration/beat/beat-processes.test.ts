/**
 * `celeriac beat` as real processes: two instances over 60 ticks of a
 * 0.5 s interval, each tick sent exactly once (read back from the broker),
 * across a SIGKILLed leader and a SIGSTOPped one (which must not send once
 * its lease passed on); on Redis, SQLite and PostgreSQL. Then a Python Celery worker
 * runs beat's tasks.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it, type TestContext } from 'node:test';
import { pathToFileURL } from 'node:url';
import { Redis } from 'ioredis';
import { beatTaskId } from '../../../src/beat/beat.ts';
import { createApp } from '../../../src/index.ts';
import { generateSigningKey } from '../../../src/codec/signing/index.ts';
import { CLI, ROOT } from '../../helpers/celeriac-worker.ts';
import { startPythonWorker } from '../../helpers/python-celery.ts';
import { hasPythonCelery, requireService, sleep } from '../../helpers/services.ts';
import { dropPgSchema, hasPostgres, pgAdmin, pgSchemaUrl } from '../../helpers/postgres.ts';
import { redisAnswers } from '../../helpers/redis-server.ts';

const REDIS_DB = 11;
const REDIS_URL = `redis://127.0.0.1:6379/${REDIS_DB}`;
const INTERVAL_MS = 500;

const redisUp = (): Promise<boolean> => redisAnswers(REDIS_URL);

interface BeatProc {
  name: string;
  proc: ChildProcess;
  logs: Array<Record<string, unknown> & { seen: number }>;
  out(): string;
  exited: Promise<number | null>;
}

function startBeat(name: string, module: string, env: Record<string, string>, args: string[]): BeatProc {
  const proc = spawn(process.execPath, [CLI, 'beat', '-A', module, '--log-format', 'json', ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    cwd: ROOT,
  });
  let out = '';
  const logs: BeatProc['logs'] = [];
  let partial = '';
  const onData = (d: Buffer): void => {
    out += d.toString();
    partial += d.toString();
    const lines = partial.split('\n');
    partial = lines.pop()!;
    for (const l of lines) {
      try {
        logs.push({ ...(JSON.parse(l) as Record<string, unknown>), seen: Date.now() });
      } catch {
        /* not a log line */
      }
    }
  };
  proc.stdout!.on('data', onData);
  proc.stderr!.on('data', onData);
  const exited = new Promise<number | null>((r) => proc.once('exit', (c) => r(c)));
  return { name, proc, logs, out: () => out, exited };
}

const msgs = (b: BeatProc, prefix: string) => b.logs.filter((l) => typeof l.msg === 'string' && l.msg.startsWith(prefix));

/** The instance that most recently logged becoming leader, among `live`. */
function leaderOf(live: BeatProc[]): BeatProc | undefined {
  let best: BeatProc | undefined;
  let at = -1;
  for (const b of live) {
    for (const l of msgs(b, 'beat: leader now')) if (l.seen > at) [best, at] = [b, l.seen];
  }
  return best;
}

async function waitFor(what: string, cond: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

describe('celeriac beat processes', () => {
  const dir = mkdtempSync(join(tmpdir(), 'celeriac-beat-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const ring = generateSigningKey('ed25519', 'beat-test-k1');

  function appModule(queue: string, task: string): string {
    const file = join(dir, `app-${queue}.mjs`);
    writeFileSync(
      file,
      `import { createApp } from ${JSON.stringify(pathToFileURL(join(ROOT, 'src', 'index.ts')).href)};\n` +
        `export const app = createApp();\n` +
        `export const beatSchedule = { tick: { task: ${JSON.stringify(task)}, schedule: ${INTERVAL_MS / 1000}, args: [2, 3], options: { queue: ${JSON.stringify(queue)} } } };\n`,
    );
    return file;
  }

  async function sixtyTicks(t: TestContext, engine: 'redis' | 'sqlite' | 'postgres'): Promise<void> {
    const queue = `beat-it-${randomBytes(4).toString('hex')}`;
    const ns = queue;
    const sqlitePath = join(dir, `${queue}.db`);
    const pg = pgSchemaUrl('beat_procs');
    if (engine === 'postgres') t.after(() => dropPgSchema(pg.schema));
    const url = engine === 'redis' ? REDIS_URL : engine === 'postgres' ? pg.url : `sqlite://${sqlitePath}`;
    const env = { CELERIAC_BROKER_URL: url, CELERIAC_ENV: 'development', CELERIAC_SIGNING_KEYS: ring.signingLine, CELERIAC_LOG_LEVEL: 'info' };
    const module = appModule(queue, 'tasks.tick');
    const args = ['--name', ns, '--lease', '1.5', '--grace', '10'];
    const all: BeatProc[] = [];
    const start = (n: string): BeatProc => {
      const b = startBeat(n, module, env, args);
      all.push(b);
      return b;
    };
    t.after(async () => {
      for (const b of all) if (b.proc.exitCode === null) b.proc.kill('SIGKILL');
    });
    const a = start('a');
    const b = start('b');
    await waitFor('the first send', () => msgs(a, 'beat: sent').length + msgs(b, 'beat: sent').length > 0, 60_000);
    const startedAt = Date.now();
    // 1. SIGKILL the leader after ~8 s; a replacement joins so two instances remain.
    await sleep(8000);
    const killed = leaderOf([a, b])!;
    killed.proc.kill('SIGKILL');
    await killed.exited;
    const c = start('c');
    let live = [a, b, c].filter((x) => x !== killed);
    await waitFor('a new leader after the kill', () => { const l = leaderOf(live); return l !== undefined && l !== killed; });
    // 2. SIGSTOP the leader for 4 s (lease 1.5 s), then SIGCONT: it must not send after losing the lease.
    await sleep(6000);
    const paused = leaderOf(live)!;
    const pausedAt = Date.now();
    paused.proc.kill('SIGSTOP');
    await sleep(4000);
    paused.proc.kill('SIGCONT');
    const resumedAt = Date.now();
    await waitFor('the paused instance to notice it lost the lease', () =>
      paused.logs.some((l) => l.seen >= resumedAt && typeof l.msg === 'string' && /lost the lease|no longer holds the lease/.test(l.msg)), 10_000);
    // 3. Run to 60+ ticks in all, then stop gracefully.
    const until = startedAt + 32_000;
    await sleep(until - Date.now());
    const stopAt = Date.now();
    for (const x of live) x.proc.kill('SIGTERM');
    const codes = await Promise.all(live.map((x) => x.exited));
    assert.deepEqual(codes, live.map(() => 0), 'graceful exit');
    for (const x of live) assert.ok(x.out().includes('beat: stopped'), x.out());
    assert.ok(live.some((x) => x.out().includes('beat: lease released')), 'the leader released its lease');

    // What the broker holds: every message beat sent.
    let headers: Array<Record<string, unknown>>;
    if (engine === 'redis') {
      const r = new Redis(REDIS_URL);
      const raw = await r.lrange(queue, 0, -1);
      await r.del(queue, `_kombu.binding.${queue}`, `celeriac:beat:{${ns}}:lock`, `celeriac:beat:{${ns}}:fence`, `celeriac:beat:{${ns}}:entries`);
      r.disconnect();
      headers = raw.map((m) => (JSON.parse(m) as { headers: Record<string, unknown> }).headers);
    } else if (engine === 'postgres') {
      headers = (await pgAdmin<{ headers: string }>(`SELECT headers FROM "${pg.schema}".messages WHERE queue = $1`, [queue])).rows.map((r) => JSON.parse(r.headers) as Record<string, unknown>);
    } else {
      const Database = createRequire(import.meta.url)('better-sqlite3') as typeof import('better-sqlite3');
      const db = new Database(sqlitePath, { readonly: true });
      headers = (db.prepare('SELECT headers FROM messages WHERE queue = ?').all(queue) as Array<{ headers: string }>).map((r) => JSON.parse(r.headers) as Record<string, unknown>);
      db.close();
    }
    const ids = headers.map((h) => String(h.id));
    assert.equal(new Set(ids).size, ids.length, `no tick sent twice (${ids.length} messages)`);
    assert.ok(headers.every((h) => h.celeriac_signature !== null && typeof h.celeriac_signature === 'object'), 'every message is signed (the celeriac_signature header)');
    // Every tick from the first sent to the last due before the stop is there exactly once.
    const sent = live.concat(killed).flatMap((x) => msgs(x, 'beat: sent').map((l) => Number(l.tick)));
    const first = Math.min(...sent);
    const expected: number[] = [];
    for (let tick = first; tick <= stopAt - 1000; tick += INTERVAL_MS) expected.push(tick);
    assert.ok(expected.length >= 60, `${expected.length} ticks`);
    const missing = expected.filter((tick) => !ids.includes(beatTaskId(ns, 'tick', tick)));
    assert.deepEqual(missing.map((m) => new Date(m).toISOString()), [], 'no tick missed across the two leader changes');
    // The paused leader sent no tick scheduled after it was stopped (a claim made before the pause may complete).
    const late = msgs(paused, 'beat: sent').filter((l) => Number(l.tick) > pausedAt);
    assert.deepEqual(late.map((l) => l.at), [], `${paused.name} sent after losing its lease`);
    assert.ok(msgs(paused, 'beat: sent').some((l) => l.seen < pausedAt), 'the paused instance had been sending before');
    // Fencing tokens only grow along the ticks: a later tick was never sent under an older lease.
    const byTick = live.concat(killed).flatMap((x) => msgs(x, 'beat: sent')).sort((p, q) => Number(p.tick) - Number(q.tick));
    const tokens = byTick.map((l) => Number(l.fence));
    assert.ok(tokens.every((tok, i) => i === 0 || tok >= tokens[i - 1]!), `tokens along the ticks: ${tokens.join(',')}`);
    assert.ok(new Set(tokens).size >= 3, 'three leaderships: the first, after the kill, after the pause');
    // Several instances sent: the leadership really moved.
    assert.ok(new Set([killed, ...live].filter((x) => msgs(x, 'beat: sent').length > 0)).size >= 2);
    // State and broker share the engine here, so every tick went into its queue with its claim (the outbox): a kill between the two cannot lose one.
    assert.deepEqual([...new Set(byTick.map((l) => l.via))], ['outbox'], 'every tick was sent through the outbox');
  }

  it('Redis: two instances, 60 ticks, each sent exactly once across a SIGKILL and a SIGSTOP of the leader', async (t) => {
    if (!requireService(t, await redisUp(), `Redis at ${REDIS_URL}`)) return;
    await sixtyTicks(t, 'redis');
  });

  it('SQLite: two instances, 60 ticks, each sent exactly once across a SIGKILL and a SIGSTOP of the leader', async (t) => {
    await sixtyTicks(t, 'sqlite');
  });

  it('PostgreSQL: two instances, 60 ticks, each sent exactly once across a SIGKILL and a SIGSTOP of the leader', async (t) => {
    if (!requireService(t, await hasPostgres(), 'PostgreSQL')) return;
    await sixtyTicks(t, 'postgres');
  });

  it("a Python Celery worker runs beat's tasks, and beat status shows the last run", async (t) => {
    if (!requireService(t, await redisUp(), `Redis at ${REDIS_URL}`)) return;
    if (!requireService(t, hasPythonCelery(), 'Python Celery')) return;
    const queue = `beat-py-${randomBytes(4).toString('hex')}`;
    const backend = `redis://127.0.0.1:6379/${REDIS_DB + 1}`;
    const worker = await startPythonWorker({ brokerUrl: REDIS_URL, backendUrl: backend, args: ['-Q', queue], concurrency: 1, name: `${queue}@localhost` });
    t.after(() => worker.stop());
    const env = { CELERIAC_BROKER_URL: REDIS_URL, CELERIAC_RESULT_BACKEND: backend, CELERIAC_ENV: 'development', CELERIAC_SIGNING_KEYS: ring.signingLine };
    const module = appModule(queue, 'tasks.add');
    const beat = startBeat('py', module, env, ['--name', queue, '--lease', '1.5']);
    t.after(() => {
      if (beat.proc.exitCode === null) beat.proc.kill('SIGKILL');
    });
    await waitFor('three sends', () => msgs(beat, 'beat: sent').length >= 3, 20_000);
    beat.proc.kill('SIGTERM');
    assert.equal(await beat.exited, 0, beat.out());
    const app = createApp({ brokerUrl: REDIS_URL, resultBackend: backend, env: { CELERIAC_ENV: 'development', CELERIAC_SIGNING_KEYS: ring.signingLine } });
    try {
      for (const l of msgs(beat, 'beat: sent').slice(0, 3)) {
        assert.equal(await app.asyncResult(String(l.taskId)).get({ timeoutMs: 20_000 }), 5, `task ${String(l.taskId)} ran in Python`);
      }
    } finally {
      await app.close();
    }
    // `celeriac beat status --json` reads the same store.
    const status = spawn(process.execPath, [CLI, 'beat', 'status', '-A', module, '--name', queue, '--json'], { env: { ...process.env, ...env }, cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    status.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    status.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    assert.equal(await new Promise((r) => status.once('exit', r)), 0, err);
    const s = JSON.parse(out) as { leader: unknown; entries: Array<{ name: string; total: number; lastTaskId: string; nextRun: string }> };
    assert.equal(s.leader, undefined, 'no leader after the stop: the lease was released');
    const e = s.entries.find((x) => x.name === 'tick')!;
    assert.ok(e.total >= 3);
    assert.equal(e.lastTaskId, String(msgs(beat, 'beat: sent').at(-1)!.taskId));
    const r = new Redis(REDIS_URL);
    await r.del(queue, `_kombu.binding.${queue}`, `celeriac:beat:{${queue}}:lock`, `celeriac:beat:{${queue}}:fence`, `celeriac:beat:{${queue}}:entries`);
    r.disconnect();
  });
});
