/**
 * A Celeriac worker process for the benchmark.
 * Usage: node --import tsx celeriac-worker.ts <concurrency> [prefork|solo]
 * Prints READY once consuming; SIGTERM stops it gracefully (and lets
 * --cpu-prof write its profile).
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { securityHooksActive, type SecurityVariant } from '../lib/security.ts';

interface WorkerLike {
  start(): Promise<void>;
  stop(): Promise<void>;
  stats(): { processed: number; succeeded: number; failed: number; rejected: number };
}
type CreateWorker = (options: Record<string, unknown>) => WorkerLike;

/** `createWorker` wherever the source tree keeps it (the worker module, a supervisor module, or the package index). */
async function findCreateWorker(): Promise<CreateWorker> {
  for (const rel of ['../../src/worker/supervisor.ts', '../../src/worker/worker.ts', '../../src/worker/index.ts', '../../src/index.ts']) {
    const url = new URL(rel, import.meta.url);
    if (!existsSync(fileURLToPath(url))) continue;
    const mod = (await import(url.href)) as { createWorker?: CreateWorker };
    if (typeof mod.createWorker === 'function') return mod.createWorker;
  }
  throw new Error('createWorker not found in src/worker/supervisor.ts, src/worker/worker.ts or src/index.ts');
}
const createWorker = await findCreateWorker();

const concurrency = Number(process.argv[2] ?? '10');
const pool = (process.argv[3] ?? 'prefork') as 'prefork' | 'solo';
const appModule = new URL('../apps/celeriac-app.ts', import.meta.url).href;
const { app } = (await import(appModule)) as typeof import('../apps/celeriac-app.ts');

const worker = createWorker({ app, appModule, concurrency, pool });
await worker.start();
const variant = (process.env.BENCH_SECURITY ?? 'plain') as SecurityVariant;
process.stdout.write(`READY ${JSON.stringify({ pid: process.pid, security: securityHooksActive(app.security, variant) })}\n`);

let stopping = false;
const stop = async (): Promise<void> => {
  if (stopping) return;
  stopping = true;
  const s = worker.stats();
  await worker.stop();
  await app.close();
  process.stderr.write(`worker stopped: ${JSON.stringify({ processed: s.processed, succeeded: s.succeeded, failed: s.failed, rejected: s.rejected })}\n`);
  process.exit(0);
};
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());
