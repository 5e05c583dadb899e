/**
 * The embedded broker under real sharing: 4 worker processes (the CLI,
 * prefork pool) and 2 producer processes on one SQLite file, 5,000 tasks.
 *
 * 1. Every task runs exactly once and every result is readable.
 * 2. The same with acksLate and one worker killed by SIGKILL mid-run:
 *    nothing is lost; the duplicates (tasks the dead worker had run but not
 *    acknowledged, which at-least-once delivery runs again) are counted and
 *    stated, and bounded by what the dead worker held.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { createApp } from '../../../src/client/app.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { sqliteUrlForPath } from '../../../src/transport/sqlite/location.ts';
import { startCeleriacWorker, type CeleriacWorkerProcess } from '../../helpers/celeriac-worker.ts';
import { sleep } from '../../helpers/services.ts';

const TASKS = fileURLToPath(new URL('./mp-tasks.ts', import.meta.url));
const PRODUCER = fileURLToPath(new URL('./mp-producer.ts', import.meta.url));
const TOTAL = 5000;
const PRODUCERS = 2;
const WORKERS = 4;
const CONCURRENCY = 8;

const root = mkdtempSync(join(tmpdir(), 'celeriac-sqlite-mp-'));
after(() => rmSync(root, { recursive: true, force: true }));

interface Run {
  url: string;
  dbPath: string;
  ledger: string;
  env: Record<string, string>;
}

function newRun(name: string, extraEnv: Record<string, string>): Run {
  const dir = join(root, name);
  mkdirSync(dir, { mode: 0o700 });
  const ledger = join(dir, 'ledger');
  mkdirSync(ledger, { mode: 0o700 });
  const dbPath = join(dir, 'shared.db');
  const url = sqliteUrlForPath(dbPath);
  return { url, dbPath, ledger, env: { CELERIAC_BROKER_URL: url, CELERIAC_RESULT_BACKEND: url, MP_LEDGER_DIR: ledger, ...extraEnv } };
}

function produce(run: Run, prefix: string, count: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--import', 'tsx', PRODUCER, prefix, String(count)], {
      env: { ...process.env, ...run.env, CELERIAC_LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.on('exit', (code) => (code === 0 && out.includes(`sent ${count}`) ? resolve() : reject(new Error(`producer ${prefix} exited ${code}: ${out}`))));
  });
}

/** Executions per task id, from every process's ledger. */
function ledgerCounts(run: Run): Map<string, number> {
  const counts = new Map<string, number>();
  for (const f of readdirSync(run.ledger)) {
    for (const id of readFileSync(join(run.ledger, f), 'utf8').split('\n')) {
      if (id) counts.set(id, (counts.get(id) ?? 0) + 1);
    }
  }
  return counts;
}

const allIds = (): string[] => Array.from({ length: PRODUCERS }, (_, p) => Array.from({ length: TOTAL / PRODUCERS }, (_, i) => `p${p}-${i}`)).flat();

async function startWorkers(run: Run): Promise<CeleriacWorkerProcess[]> {
  return Promise.all(
    Array.from({ length: WORKERS }, (_, i) =>
      startCeleriacWorker({ module: TASKS, env: run.env, args: ['-P', 'prefork', '--processes', '1', '-c', String(CONCURRENCY), '-n', `mp${i}@%h`] }),
    ),
  );
}

/** Wait until every task has a SUCCESS result with the right value; returns how many are readable. */
async function awaitResults(run: Run, timeoutMs: number): Promise<{ ok: number; wrong: string[] }> {
  const app = createApp({ brokerUrl: run.url, resultBackend: run.url, logger: createLogger({ level: 'silent' }) });
  const store = (await app.resultStore())!;
  const ids = allIds();
  const deadline = Date.now() + timeoutMs;
  let ok = 0;
  let wrong: string[] = [];
  for (;;) {
    const payloads = await store.backend.getMany(ids);
    ok = 0;
    wrong = [];
    payloads.forEach((p, i) => {
      if (!p) return;
      const meta = store.decode(p, ids[i]!);
      const n = Number(ids[i]!.split('-')[1]);
      if (meta.status === 'SUCCESS' && meta.result === n * 2) ok++;
      else wrong.push(`${ids[i]}: ${meta.status} ${JSON.stringify(meta.result)}`);
    });
    if (ok === ids.length || Date.now() > deadline) break;
    await sleep(200);
  }
  await app.close();
  return { ok, wrong };
}

/** Warm shutdown; SIGKILL after 20 s (the timer must not keep the test process alive). */
async function stopWorker(w: CeleriacWorkerProcess): Promise<void> {
  w.kill('SIGTERM');
  const t = setTimeout(() => w.kill('SIGKILL'), 20_000);
  t.unref();
  await w.exited;
  clearTimeout(t);
}

function messagesLeft(run: Run): number {
  const db = new Database(run.dbPath, { readonly: true });
  const n = (db.prepare('SELECT count(*) AS n FROM messages').get() as { n: number }).n;
  db.close();
  return n;
}

describe('sqlite: 4 workers and 2 producers on one file, 5,000 tasks', { timeout: 240_000 }, () => {
  it('runs every task exactly once and every result is readable', async () => {
    const run = newRun('clean', {});
    const booting = performance.now();
    const workers = await startWorkers(run);
    const bootS = (performance.now() - booting) / 1000;
    try {
      const started = performance.now();
      await Promise.all(Array.from({ length: PRODUCERS }, (_, p) => produce(run, `p${p}`, TOTAL / PRODUCERS)));
      const { ok, wrong } = await awaitResults(run, 120_000);
      const secs = (performance.now() - started) / 1000;
      assert.deepEqual(wrong, []);
      assert.equal(ok, TOTAL, 'every result readable and correct');
      const counts = ledgerCounts(run);
      const missing = allIds().filter((id) => !counts.has(id));
      const dup = [...counts].filter(([, n]) => n > 1);
      assert.deepEqual(missing, [], 'every task ran');
      assert.deepEqual(dup, [], 'no task ran twice');
      assert.equal(counts.size, TOTAL);
      console.log(
        `# clean run: ${TOTAL} tasks, ${WORKERS} workers, ${PRODUCERS} producers: ${secs.toFixed(1)} s (${Math.round(TOTAL / secs)} tasks/s end to end, workers booted in ${bootS.toFixed(1)} s), 0 duplicates, 0 missing`,
      );
    } finally {
      const stopping = performance.now();
      await Promise.all(workers.map(stopWorker));
      console.log(`# clean run: workers stopped in ${((performance.now() - stopping) / 1000).toFixed(1)} s`);
    }
    assert.equal(messagesLeft(run), 0, 'no message left behind');
  });

  it('with acksLate, loses nothing when a worker is killed by SIGKILL mid-run (duplicates counted)', async () => {
    const run = newRun('kill', { MP_ACKS_LATE: '1', MP_VISIBILITY: '2', MP_TASK_MS: '5' });
    const workers = await startWorkers(run);
    const victim = workers[0]!;
    let killedAt = -1;
    try {
      const started = performance.now();
      const producing = Promise.all(Array.from({ length: PRODUCERS }, (_, p) => produce(run, `p${p}`, TOTAL / PRODUCERS)));
      // Kill once the victim has run a good share of its tasks, while it holds a full prefetch.
      for (;;) {
        const mine = ledgerCountsOf(run, victim);
        const all = [...ledgerCounts(run).values()].reduce((a, b) => a + b, 0);
        if (mine >= 150 && all >= TOTAL / 4) {
          killedAt = all;
          victim.kill('SIGKILL');
          break;
        }
        if (performance.now() - started > 60_000) throw new Error('the victim never got going');
        await sleep(20);
      }
      await producing;
      const { ok, wrong } = await awaitResults(run, 120_000);
      const secs = (performance.now() - started) / 1000;
      assert.deepEqual(wrong, []);
      assert.equal(ok, TOTAL, 'nothing lost: every result readable and correct');
      const counts = ledgerCounts(run);
      const missing = allIds().filter((id) => !counts.has(id));
      const dups = [...counts].filter(([, n]) => n > 1);
      assert.deepEqual(missing, [], 'every task ran');
      // At most what the dead worker held: its prefetch window (concurrency × 4).
      assert.ok(dups.length <= CONCURRENCY * 4, `${dups.length} duplicates`);
      assert.ok(dups.every(([, n]) => n === 2), 'no task ran more than twice');
      const restored = workers.slice(1).some((w) => /restored \d+ unacknowledged message/.test(w.output()));
      console.log(
        `# SIGKILL run: killed worker ${victim.pid} after ${killedAt} executions; ${TOTAL} tasks in ${secs.toFixed(1)} s; ` +
          `0 lost, ${dups.length} duplicate execution(s) (tasks the dead worker had started but not acknowledged), restore logged: ${restored}`,
      );
    } finally {
      const stopping = performance.now();
      await Promise.all(workers.slice(1).map(stopWorker));
      await victim.exited;
      console.log(`# SIGKILL run: workers stopped in ${((performance.now() - stopping) / 1000).toFixed(1)} s`);
    }
    assert.equal(messagesLeft(run), 0, 'no message left behind');
  });
});

/** Executions recorded by one worker (the prefork pool's child writes the ledger, so match by any of its pids). */
function ledgerCountsOf(run: Run, w: CeleriacWorkerProcess): number {
  const pids = new Set<string>([String(w.pid), ...childPids(w.pid)]);
  let n = 0;
  for (const f of readdirSync(run.ledger)) {
    const pid = /^runs-(\d+)\.log$/.exec(f)?.[1];
    if (pid && pids.has(pid)) n += readFileSync(join(run.ledger, f), 'utf8').split('\n').filter(Boolean).length;
  }
  return n;
}

function childPids(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
  } catch {
    return [];
  }
}
