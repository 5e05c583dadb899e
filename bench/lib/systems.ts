/**
 * How the runner drives each system: its worker process, how a worker is
 * released onto a waiting backlog, how finished tasks are counted, and
 * which client runs its sends.
 *
 * Concurrency ("tasks running at once") per system:
 * - celeriac:       createWorker({ concurrency: c }) with the default prefork pool:
 *                   defaultProcesses(c, CPUs) child processes (CPUs − 1, at least 1,
 *                   at most c), c slots in all; prefetch 4 × c.
 * - celeriac-solo:  the same with pool 'solo' (tasks in the worker process).
 * - bullmq:         new Worker(queue, fn, { concurrency: c }), one process.
 * - bee-queue:      queue.process(c, fn), one process.
 * - celery:         c=1 → --pool solo; c=10 → --pool threads -c 10;
 *                   c=100 → --pool prefork -c 2 (two processes on two cores);
 *                   prefetch multiplier 4, acks late.
 */
import type { Redis } from 'ioredis';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { defaultProcesses } from '../../dist/worker/prefork/supervisor.js';
import type { ClientJob, ClientResult } from '../clients/node-client.ts';
import { BENCH_DIR, ROOT_DIR, runJson, spawnLines, type LineProcess, type QueueSystem } from './common.ts';
import { PYTHON } from './machine.ts';
import type { BenchRedis } from './redis-server.ts';

export interface Ctx {
  redis: BenchRedis;
  /** Commands on db 0 (broker) and db 1 (Celeriac's and Celery's results). */
  db0: Redis;
  db1: Redis;
  env: Record<string, string>;
  /** Extra environment for Celeriac worker processes (e.g. NODE_OPTIONS for --cpu-prof). */
  workerEnv?: Record<string, string>;
}

export interface WorkerHandle {
  lp: LineProcess;
  pid: number;
  info: Record<string, unknown>;
  parked: boolean;
}

export interface Progress {
  done: number;
  failed: number;
}

export interface Adapter {
  name: QueueSystem;
  /** Celery's Redis layout (kombu): queue list `celery`, results `celery-task-meta-*` in db 1. */
  kombu: boolean;
  concurrencyMeaning(c: number): string;
  startWorker(ctx: Ctx, concurrency: number, env: Record<string, string>): Promise<WorkerHandle>;
  /** Let a started worker consume the waiting backlog. */
  release(ctx: Ctx, h: WorkerHandle): Promise<void>;
  progress(ctx: Ctx): Promise<Progress>;
  /** Messages waiting in the queue. */
  backlog(ctx: Ctx): Promise<number>;
  /** Run a client job (enqueue, latency) for this system. */
  client(ctx: Ctx, job: ClientJob, env: Record<string, string>): Promise<ClientResult>;
  /** Put `n` tasks in the queue (untimed; bulk). */
  fill(ctx: Ctx, n: number, env: Record<string, string>, pad: number): Promise<ClientResult>;
  /** After a drain: every result is a success (throws otherwise). `sample` limits the check. */
  verify(ctx: Ctx, n: number, sample?: number): Promise<void>;
}

const NODE_CLIENT = join(BENCH_DIR, 'clients', 'node-client.ts');
const CELERY_DIR = join(BENCH_DIR, 'celery');
const PARKED = 'bench-parked';

/** TypeScript scripts (the clients) run through tsx; every worker is plain JavaScript, with no loader in the measured processes. */
function nodeArgs(script: string, args: string[]): string[] {
  return script.endsWith('.ts') ? ['--import', 'tsx', script, ...args] : [script, ...args];
}

export function runNodeClient(system: string, job: ClientJob, env: Record<string, string>, timeoutMs = 600_000): Promise<ClientResult> {
  return runJson<ClientResult>(process.execPath, nodeArgs(NODE_CLIENT, [system, JSON.stringify(job)]), { cwd: ROOT_DIR, env, timeoutMs, what: `${system} client ${job.op}` });
}

async function startNodeWorker(script: string, args: string[], env: Record<string, string>, what: string): Promise<WorkerHandle> {
  const lp = spawnLines(process.execPath, nodeArgs(join(BENCH_DIR, 'workers', script), args), { cwd: ROOT_DIR, env });
  const line = await lp.waitForLine(/^READY /, 60_000, what).catch(async (err: unknown) => {
    await lp.stop(1000);
    throw err;
  });
  return { lp, pid: lp.pid, info: JSON.parse(line.slice('READY '.length)) as Record<string, unknown>, parked: false };
}

// ── kombu layout (Celeriac and Python Celery) ────────────────────────────

/** Move the backlog out of the worker's sight; `release` moves it back in one step. */
export async function park(ctx: Ctx): Promise<void> {
  await ctx.db0.rename('celery', PARKED);
}

async function kombuRelease(ctx: Ctx, h: WorkerHandle): Promise<void> {
  if (h.parked) {
    await ctx.db0.rename(PARKED, 'celery');
    h.parked = false;
  }
}

async function kombuProgress(ctx: Ctx): Promise<Progress> {
  return { done: await ctx.db1.dbsize(), failed: 0 };
}

async function kombuVerify(ctx: Ctx, n: number, sample?: number): Promise<void> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await ctx.db1.scan(cursor, 'MATCH', 'celery-task-meta-*', 'COUNT', 1000);
    cursor = next;
    keys.push(...batch);
    if (sample && keys.length >= sample) break;
  } while (cursor !== '0');
  if (!sample && keys.length !== n) throw new Error(`expected ${n} results, found ${keys.length}`);
  const bad: string[] = [];
  for (let i = 0; i < keys.length; i += 1000) {
    const values = await ctx.db1.mget(...keys.slice(i, i + 1000));
    for (const v of values) {
      if (v && !v.includes('"SUCCESS"')) bad.push(v.slice(0, 300));
    }
  }
  if (bad.length > 0) throw new Error(`${bad.length} results are not SUCCESS, e.g. ${bad[0]}`);
}

function celeriac(pool: 'prefork' | 'solo'): Adapter {
  const name: QueueSystem = pool === 'prefork' ? 'celeriac' : 'celeriac-solo';
  return {
    name,
    kombu: true,
    concurrencyMeaning: (c) => {
      if (pool === 'solo') return `solo, concurrency ${c}`;
      const n = defaultProcesses(c, availableParallelism());
      return `prefork, concurrency ${c} (${n} child process${n > 1 ? 'es' : ''})`;
    },
    startWorker: (ctx, c, env) => startNodeWorker('celeriac-worker.mjs', [String(c), pool], { ...env, ...ctx.workerEnv }, `${name} worker`),
    release: kombuRelease,
    progress: kombuProgress,
    backlog: (ctx) => ctx.db0.llen('celery'),
    client: (_ctx, job, env) => runNodeClient(name, job, env),
    fill: (_ctx, n, env) => runNodeClient(name, { op: 'fill', n, batch: 1000 }, env),
    verify: kombuVerify,
  };
}

function bullmq(): Adapter {
  return {
    name: 'bullmq',
    kombu: false,
    concurrencyMeaning: (c) => `Worker concurrency ${c}, one process`,
    startWorker: (_ctx, c, env) => startNodeWorker('bullmq-worker.mjs', [String(c)], env, 'bullmq worker'),
    release: async (_ctx, h) => h.lp.write('go'),
    progress: async (ctx) => {
      const [done, failed] = await Promise.all([ctx.db0.zcard('bull:bench:completed'), ctx.db0.zcard('bull:bench:failed')]);
      return { done, failed };
    },
    backlog: (ctx) => ctx.db0.llen('bull:bench:wait'),
    client: (_ctx, job, env) => runNodeClient('bullmq', job, env),
    fill: (_ctx, n, env, pad) => runNodeClient('bullmq', { op: 'fill', n, batch: 1000, pad }, env),
    verify: async (ctx, n) => {
      const [done, failed] = await Promise.all([ctx.db0.zcard('bull:bench:completed'), ctx.db0.zcard('bull:bench:failed')]);
      if (failed > 0 || done < n) throw new Error(`bullmq: ${done} completed, ${failed} failed of ${n}`);
    },
  };
}

function beeQueue(): Adapter {
  return {
    name: 'bee-queue',
    kombu: false,
    concurrencyMeaning: (c) => `queue.process(${c}, fn), one process`,
    startWorker: (_ctx, c, env) => startNodeWorker('bee-queue-worker.mjs', [String(c)], env, 'bee-queue worker'),
    release: async (_ctx, h) => h.lp.write('go'),
    progress: async (ctx) => {
      const [done, failed] = await Promise.all([ctx.db0.scard('bq:bench:succeeded'), ctx.db0.scard('bq:bench:failed')]);
      return { done, failed };
    },
    backlog: (ctx) => ctx.db0.llen('bq:bench:waiting'),
    client: (_ctx, job, env) => runNodeClient('bee-queue', job, env),
    fill: (_ctx, n, env, pad) => runNodeClient('bee-queue', { op: 'fill', n, batch: 1000, pad }, env),
    verify: async (ctx, n) => {
      const [done, failed] = await Promise.all([ctx.db0.scard('bq:bench:succeeded'), ctx.db0.scard('bq:bench:failed')]);
      if (failed > 0 || done < n) throw new Error(`bee-queue: ${done} succeeded, ${failed} failed of ${n}`);
    },
  };
}

export function celeryPoolArgs(c: number): string[] {
  if (c <= 1) return ['--pool', 'solo'];
  if (c <= 10) return ['--pool', 'threads', '-c', String(c)];
  return ['--pool', 'prefork', '-c', '2'];
}

function celery(): Adapter {
  return {
    name: 'celery',
    kombu: true,
    concurrencyMeaning: (c) => celeryPoolArgs(c).join(' '),
    async startWorker(_ctx, c, env) {
      const lp = spawnLines(
        PYTHON,
        ['-m', 'celery', '-A', 'bench_app', 'worker', ...celeryPoolArgs(c), '--loglevel', 'WARNING', '--without-mingle', '--without-gossip', '--without-heartbeat', '-n', 'bench@localhost', '-Q', 'celery'],
        { cwd: CELERY_DIR, env: { ...env, PYTHONPATH: CELERY_DIR, PYTHONUNBUFFERED: '1' } },
      );
      const line = await lp.waitForLine(/^BENCH-READY /, 60_000, 'celery worker').catch(async (err: unknown) => {
        await lp.stop(1000);
        throw err;
      });
      // Stopped after its work is done and counted: a cold shutdown (SIGQUIT) saves Celery's 1.5 s warm one.
      const stop = lp.stop.bind(lp);
      lp.stop = (graceMs?: number) => stop(graceMs, 'SIGQUIT');
      return { lp, pid: lp.pid, info: JSON.parse(line.slice('BENCH-READY '.length)) as Record<string, unknown>, parked: false };
    },
    release: kombuRelease,
    progress: kombuProgress,
    backlog: (ctx) => ctx.db0.llen('celery'),
    client: (_ctx, job, env) =>
      runJson<ClientResult>(PYTHON, [join(CELERY_DIR, 'client.py'), JSON.stringify(job)], {
        cwd: CELERY_DIR,
        env: { ...env, PYTHONPATH: CELERY_DIR, PYTHONUNBUFFERED: '1' },
        timeoutMs: 600_000,
        what: `celery client ${job.op}`,
      }),
    // Celeriac's client writes the same protocol-v2 messages for the same task name, much faster than Python: the fill is untimed.
    fill: (_ctx, n, env) => runNodeClient('celeriac', { op: 'fill', n, batch: 1000 }, { ...env, BENCH_SECURITY: 'plain' }),
    verify: kombuVerify,
  };
}

export function adapterFor(name: QueueSystem): Adapter {
  switch (name) {
    case 'celeriac':
      return celeriac('prefork');
    case 'celeriac-solo':
      return celeriac('solo');
    case 'bullmq':
      return bullmq();
    case 'bee-queue':
      return beeQueue();
    case 'celery':
      return celery();
  }
}
