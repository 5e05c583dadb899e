/**
 * What the embedded SQLite broker gives you before you need Redis: enqueue
 * and drain throughput, with results stored, on this machine.
 *
 *     node --import tsx bench/sqlite-throughput.ts [--tasks 10000] [--workers 1,4] [--pool solo|prefork]
 *
 * Phases (each on a fresh database in a temporary directory):
 * 1. enqueue, one `delay()` per task (one transaction each) and in batches
 *    (`sendMany`, 100 per transaction): tasks/s as the client sees them;
 * 2. drain, raw: one in-process consumer that takes each message, stores a
 *    SUCCESS result and acks — the broker and backend alone;
 * 3. drain, real workers: N `celeriac worker` processes (this file is their
 *    app module) run a no-op task and store its result; the rate is measured
 *    between the first and the last stored result, so process start-up does
 *    not count.
 * Prints one summary line (prefixed `sqlite-throughput:`) and, with --json,
 * the numbers as JSON.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { createApp, type App } from '../src/client/app.ts';
import { createSqliteBackend } from '../src/transport/sqlite/backend.ts';
import { ResultStore } from '../src/client/results.ts';
import { createSqliteBroker } from '../src/transport/sqlite/broker.ts';
import { resolveSettings } from '../src/config/options.ts';
import { createLogger } from '../src/observability/logging.ts';
import { buildResultMeta } from '../src/protocol/result-meta.ts';
import { parseIso } from '../src/protocol/time.ts';
import { peekTaskHeaders } from '../src/protocol/task-message.ts';
import { sqliteUrlForPath } from '../src/transport/sqlite/location.ts';

/** The app the bench's worker processes load with -A (URLs from the environment). */
export const app: App = createApp({ resultExpires: 3600 });
app.task('bench.noop', (i: number) => i, { params: ['i'] });

const SELF = fileURLToPath(import.meta.url);
const CLI = fileURLToPath(new URL('../bin/celeriac.mjs', import.meta.url));
const ROOT = fileURLToPath(new URL('../', import.meta.url));
const quiet = createLogger({ level: 'warn' });

interface Numbers {
  enqueueSingle: number;
  enqueueBatched: number;
  drainRaw: number;
  drainWorkers: Record<string, number>;
}

function fresh(): { dir: string; url: string } {
  const dir = mkdtempSync(join(tmpdir(), 'celeriac-bench-sqlite-'));
  return { dir, url: sqliteUrlForPath(join(dir, 'bench.db')) };
}

function clientApp(url: string): App {
  const a = createApp({ brokerUrl: url, resultBackend: url, resultExpires: 3600, logger: quiet });
  a.task('bench.noop', (i: number) => i, { params: ['i'] });
  return a;
}

async function enqueue(url: string, tasks: number, batched: boolean): Promise<number> {
  const a = clientApp(url);
  await a.broker();
  const start = performance.now();
  if (batched) {
    for (let i = 0; i < tasks; i += 100) {
      await a.sendMany(Array.from({ length: Math.min(100, tasks - i) }, (_, k) => ({ name: 'bench.noop', args: [i + k] })));
    }
  } else {
    for (let i = 0; i < tasks; i++) await a.sendTask('bench.noop', [i]);
  }
  const rate = tasks / ((performance.now() - start) / 1000);
  await a.close();
  return rate;
}

/** Broker + backend only: reserve, store a result, ack. */
async function drainRaw(url: string, tasks: number): Promise<number> {
  const settings = resolveSettings({});
  const broker = createSqliteBroker({ url, settings, logger: quiet });
  const store = new ResultStore(createSqliteBackend({ url, settings, logger: quiet }), { expiresSeconds: 3600 });
  await broker.connect();
  let done = 0;
  let start = 0;
  const finished = new Promise<void>((resolve) => {
    void broker.consume(['celery'], { prefetch: 200 }, (d) => {
      if (start === 0) start = performance.now();
      const id = peekTaskHeaders(d.message).id ?? 'unknown';
      void store
        .store(buildResultMeta({ taskId: id, status: 'SUCCESS', result: null }))
        .then(() => d.ack())
        .then(() => {
          if (++done === tasks) resolve();
        });
    });
  });
  await finished;
  const rate = tasks / ((performance.now() - start) / 1000);
  await broker.close();
  await store.close();
  return rate;
}

/** Real worker processes; rate between the first and last result's date_done. */
async function drainWorkers(url: string, tasks: number, workers: number, pool: string): Promise<number> {
  const a = clientApp(url);
  const ids: string[] = [];
  for (let i = 0; i < tasks; i += 500) {
    const rs = await a.sendMany(Array.from({ length: Math.min(500, tasks - i) }, (_, k) => ({ name: 'bench.noop', args: [i + k] })));
    ids.push(...rs.map((r) => r.id));
  }
  const procs = Array.from({ length: workers }, (_, n) =>
    spawn(process.execPath, [CLI, 'worker', '-A', SELF, '-P', pool, '-c', '8', '--processes', '1', '-n', `bench${n}@%h`, '-l', 'warn'], {
      cwd: ROOT,
      env: { ...process.env, CELERIAC_BROKER_URL: url, CELERIAC_RESULT_BACKEND: url },
      stdio: ['ignore', 'ignore', 'inherit'],
    }),
  );
  const store = (await a.resultStore())!;
  // Wait for the last one (results land roughly in order), then read them all.
  await store.wait(ids[ids.length - 1]!, { timeoutMs: 600_000 });
  let metas = await Promise.all(ids.map((id) => store.get(id)));
  while (metas.some((m) => m.status !== 'SUCCESS')) {
    await new Promise((r) => setTimeout(r, 100));
    metas = await Promise.all(ids.map((id) => store.get(id)));
  }
  for (const p of procs) p.kill('SIGTERM');
  await Promise.all(procs.map((p) => new Promise((r) => (p.exitCode !== null ? r(null) : p.once('exit', r)))));
  const times = metas.map((m) => parseIso(String(m.date_done)) ?? 0).sort((x, y) => x - y);
  await a.close();
  const span = (times[times.length - 1]! - times[0]!) / 1000;
  return (tasks - 1) / Math.max(span, 0.001);
}

async function main(): Promise<void> {
  // The workers below inherit it; the database is a private file. Production is the default (src/config/mode.ts).
  process.env.CELERIAC_ENV ||= 'development';
  const { values } = parseArgs({
    options: {
      tasks: { type: 'string', default: '10000' },
      workers: { type: 'string', default: '1,4' },
      pool: { type: 'string', default: 'solo' },
      json: { type: 'boolean', default: false },
    },
  });
  const tasks = Number(values.tasks);
  const workerCounts = values.workers.split(',').map(Number).filter((n) => n > 0);
  const single = Math.min(tasks, 2000);
  const n: Numbers = { enqueueSingle: 0, enqueueBatched: 0, drainRaw: 0, drainWorkers: {} };
  const dirs: string[] = [];
  try {
    let db = fresh();
    dirs.push(db.dir);
    // Warm-up (JIT, module loading) on its own file, not measured.
    await enqueue(db.url, 500, false);
    await enqueue(db.url, 500, true);
    db = fresh();
    dirs.push(db.dir);
    n.enqueueSingle = await enqueue(db.url, single, false);
    db = fresh();
    dirs.push(db.dir);
    n.enqueueBatched = await enqueue(db.url, tasks, true);
    n.drainRaw = await drainRaw(db.url, tasks);
    for (const w of workerCounts) {
      db = fresh();
      dirs.push(db.dir);
      n.drainWorkers[String(w)] = await drainWorkers(db.url, tasks, w, values.pool);
    }
  } finally {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
  const f = (x: number): string => Math.round(x).toLocaleString('en-US');
  const workersText = Object.entries(n.drainWorkers)
    .map(([w, r]) => `${w} worker${w === '1' ? '' : 's'} ${f(r)}/s`)
    .join(' · ');
  console.log(
    `sqlite-throughput: ${tasks} tasks, ${availableParallelism()} CPUs (${cpus()[0]?.model.trim() ?? 'unknown'}), WAL + synchronous=NORMAL | ` +
      `enqueue: 1-by-1 ${f(n.enqueueSingle)}/s · batched ${f(n.enqueueBatched)}/s | ` +
      `drain with results: in-process consumer ${f(n.drainRaw)}/s · ${workersText} (${values.pool} pool)`,
  );
  if (values.json) console.log(JSON.stringify({ tasks, cpus: availableParallelism(), pool: values.pool, ...n }));
}

// Run only as a script; the worker processes import this file for its app.
if (process.argv[1] && pathToFileURL(process.argv[1]).href === import.meta.url) {
  await main();
  process.exit(0);
}
