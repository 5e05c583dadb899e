/**
 * The PostgreSQL engine beside Redis, in one run, on this machine: the same
 * phases against each engine, and the ratio PostgreSQL / Redis.
 *
 *     node --import tsx bench/postgres-throughput.ts [--tasks 5000] [--rounds 1] [--engines redis,postgres] [--json] [--smoke]
 *
 * `npm run bench -- --with postgres` runs it and adds its rows (systems
 * `celeriac-postgres` and `celeriac-redis`, this run's Redis beside it) to
 * the report: with `--json` its last line is `{"rows": [...]}`.
 *
 * Engines: `redis` (loopback Redis, `BENCH_REDIS_URL`, default
 * redis://127.0.0.1:6379/11) and `postgres` (loopback PostgreSQL,
 * `BENCH_PG_URL`, default postgres://postgres@127.0.0.1:5432/test, in a
 * schema of this run, dropped after). Every phase uses a queue of its own,
 * so other users of the servers are not disturbed.
 *
 * Phases (systems in turns):
 * 1. enqueue, one `sendTask` at a time and in batches of 100 (`sendMany`);
 * 2. drain, raw: one in-process consumer (prefetch 200) that stores a
 *    SUCCESS result and acks each message — the broker and backend alone;
 * 3. drain, a real `celeriac worker` (solo pool, -c 16) running a no-op
 *    task and storing its result, timed between the first and the last
 *    stored result so start-up does not count.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { availableParallelism, cpus } from 'node:os';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { createApp, type App } from '../src/client/app.ts';
import { ResultStore } from '../src/client/results.ts';
import { resolveSettings } from '../src/config/options.ts';
import { createLogger } from '../src/observability/logging.ts';
import { buildResultMeta } from '../src/protocol/result-meta.ts';
import { peekTaskHeaders } from '../src/protocol/task-message.ts';
import { parseIso } from '../src/protocol/time.ts';
import { createBackend, createBroker } from '../src/transport/index.ts';

/** The app the bench's worker processes load with -A (URLs and queue from the environment). */
export const app: App = createApp({ resultExpires: 3600, taskDefaultQueue: process.env.BENCH_QUEUE ?? 'celery' });
app.task('bench.noop', (i: number) => i, { params: ['i'] });

const SELF = fileURLToPath(import.meta.url);
const CLI = fileURLToPath(new URL('../bin/celeriac.mjs', import.meta.url));
const ROOT = fileURLToPath(new URL('../', import.meta.url));
const quiet = createLogger({ level: 'warn' });

type EngineKey = 'redis' | 'postgres';
interface Numbers {
  enqueueSingle: number;
  enqueueBatched: number;
  drainRaw: number;
  drainWorker: number;
}

const queueName = (): string => `bench-${randomBytes(4).toString('hex')}`;

function clientApp(url: string, queue: string): App {
  const a = createApp({ brokerUrl: url, resultBackend: url, resultExpires: 3600, taskDefaultQueue: queue, logger: quiet });
  a.task('bench.noop', (i: number) => i, { params: ['i'] });
  return a;
}

async function enqueue(url: string, tasks: number, batched: boolean): Promise<number> {
  const queue = queueName();
  const a = clientApp(url, queue);
  await a.broker();
  const start = performance.now();
  if (batched) {
    for (let i = 0; i < tasks; i += 100) await a.sendMany(Array.from({ length: Math.min(100, tasks - i) }, (_, k) => ({ name: 'bench.noop', args: [i + k] })));
  } else {
    for (let i = 0; i < tasks; i++) await a.sendTask('bench.noop', [i]);
  }
  const rate = tasks / ((performance.now() - start) / 1000);
  await (await a.broker()).purge(queue);
  await a.close();
  return rate;
}

async function fill(url: string, queue: string, tasks: number): Promise<string[]> {
  const a = clientApp(url, queue);
  const ids: string[] = [];
  for (let i = 0; i < tasks; i += 500) ids.push(...(await a.sendMany(Array.from({ length: Math.min(500, tasks - i) }, (_, k) => ({ name: 'bench.noop', args: [i + k] })))).map((r) => r.id));
  await a.close();
  return ids;
}

/** Broker + backend only: reserve, store a result, ack. */
async function drainRaw(url: string, tasks: number): Promise<number> {
  const queue = queueName();
  await fill(url, queue, tasks);
  const settings = resolveSettings({});
  const broker = await createBroker(url, { settings, logger: quiet });
  const store = new ResultStore(await createBackend(url, { settings, logger: quiet }), { expiresSeconds: 3600 });
  await broker.connect();
  let done = 0;
  let start = 0;
  await new Promise<void>((resolve) => {
    void broker.consume([queue], { prefetch: 200 }, (d) => {
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
  const rate = tasks / ((performance.now() - start) / 1000);
  await broker.close();
  await store.close();
  return rate;
}

/** One real worker process; rate between the first and last result's date_done. */
async function drainWorker(url: string, tasks: number): Promise<number> {
  const queue = queueName();
  const ids = await fill(url, queue, tasks);
  const proc = spawn(process.execPath, [CLI, 'worker', '-A', SELF, '-P', 'solo', '-c', '16', '-Q', queue, '-n', `bench-${queue}@%h`, '-l', 'warn'], {
    cwd: ROOT,
    env: { ...process.env, CELERIAC_BROKER_URL: url, CELERIAC_RESULT_BACKEND: url, BENCH_QUEUE: queue },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const a = clientApp(url, queue);
  const store = (await a.resultStore())!;
  await store.wait(ids[ids.length - 1]!, { timeoutMs: 300_000 });
  let metas = await Promise.all(ids.map((id) => store.get(id)));
  while (metas.some((m) => m.status !== 'SUCCESS')) {
    await new Promise((r) => setTimeout(r, 100));
    metas = await Promise.all(ids.map((id) => store.get(id)));
  }
  proc.kill('SIGTERM');
  await new Promise((r) => (proc.exitCode !== null ? r(null) : proc.once('exit', r)));
  const times = metas.map((m) => parseIso(String(m.date_done)) ?? 0).sort((x, y) => x - y);
  await a.close();
  return (tasks - 1) / Math.max((times[times.length - 1]! - times[0]!) / 1000, 0.001);
}

async function main(): Promise<void> {
  // Loopback servers without TLS or passwords: development mode (the worker processes inherit it).
  process.env.CELERIAC_ENV ||= 'development';
  const { values } = parseArgs({
    options: {
      tasks: { type: 'string', default: '5000' },
      rounds: { type: 'string', default: '1' },
      engines: { type: 'string', default: 'redis,postgres' },
      json: { type: 'boolean', default: false },
      smoke: { type: 'boolean', default: false },
    },
  });
  const tasks = values.smoke ? 300 : Number(values.tasks);
  const rounds = values.smoke ? 1 : Math.max(1, Number(values.rounds));
  const engines = values.engines.split(',').map((s) => s.trim()) as EngineKey[];
  const schema = `bench_${randomBytes(4).toString('hex')}`;
  const pgBase = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
  const urls: Record<EngineKey, string> = {
    redis: process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379/11',
    postgres: `${pgBase}${pgBase.includes('?') ? '&' : '?'}schema=${schema}`,
  };
  const all = Object.fromEntries(engines.map((e) => [e, [] as Numbers[]])) as Record<EngineKey, Numbers[]>;
  const single = Math.min(tasks, 1000);
  try {
    for (const e of engines) await enqueue(urls[e], 300, true); // warm-up (JIT, modules, schema creation), not measured
    for (let r = 0; r < rounds; r++) {
      const n = Object.fromEntries(engines.map((e) => [e, { enqueueSingle: 0, enqueueBatched: 0, drainRaw: 0, drainWorker: 0 }])) as Record<EngineKey, Numbers>;
      for (const e of engines) n[e].enqueueSingle = await enqueue(urls[e], single, false);
      for (const e of engines) n[e].enqueueBatched = await enqueue(urls[e], tasks, true);
      for (const e of engines) n[e].drainRaw = await drainRaw(urls[e], tasks);
      for (const e of engines) n[e].drainWorker = await drainWorker(urls[e], tasks);
      for (const e of engines) all[e].push(n[e]);
    }
  } finally {
    if (engines.includes('postgres')) {
      const c = new pg.Client({ connectionString: pgBase });
      await c.connect();
      await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE; DROP SCHEMA IF EXISTS "${schema}_replay" CASCADE`);
      await c.end();
    }
  }
  const med = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
  const n = Object.fromEntries(engines.map((e) => [e, Object.fromEntries((['enqueueSingle', 'enqueueBatched', 'drainRaw', 'drainWorker'] as const).map((k) => [k, med(all[e].map((x) => x[k]))]))])) as unknown as Record<EngineKey, Numbers>;
  const f = (x: number): string => Math.round(x).toLocaleString('en-US');
  const rows4: Array<[string, keyof Numbers]> = [['enqueue 1-by-1', 'enqueueSingle'], ['enqueue batched (100)', 'enqueueBatched'], ['drain raw (consumer + results)', 'drainRaw'], ['drain, 1 worker (solo, -c 16)', 'drainWorker']];
  console.log(`postgres-throughput: ${tasks} tasks, ${rounds} round(s), medians, ${availableParallelism()} CPUs (${cpus()[0]?.model.trim() ?? 'unknown'})`);
  console.log(`| phase (tasks/s) | ${engines.join(' | ')} |${engines.length === 2 ? ' ratio |' : ''}`);
  console.log(`| --- | ${engines.map(() => '---').join(' | ')} |${engines.length === 2 ? ' --- |' : ''}`);
  for (const [label, k] of rows4) {
    const ratio = engines.length === 2 ? ` ×${(n[engines[1]!][k] / n[engines[0]!][k]).toFixed(2)} |` : '';
    console.log(`| ${label} | ${engines.map((e) => f(n[e][k])).join(' | ')} |${ratio}`);
  }
  if (values.json) {
    const rows = engines.flatMap((e) =>
      rows4.map(([label, k]) => {
        const xs = all[e].map((x) => x[k]);
        const round1 = (x: number): number => Math.round(x * 10) / 10;
        return { system: `celeriac-${e}`, workload: label, median: round1(med(xs)), min: round1(Math.min(...xs)), max: round1(Math.max(...xs)), unit: 'tasks/s' };
      }),
    );
    console.log(JSON.stringify({ rows }));
  }
}

// Run only as a script; the worker processes import this file for its app.
if (process.argv[1] && pathToFileURL(process.argv[1]).href === import.meta.url) {
  await main();
  process.exit(0);
}
