/**
 * A Celeriac worker process for the benchmark, in plain JavaScript on the
 * compiled package (no TypeScript loader here or in the prefork children).
 * Usage: node celeriac-worker.mjs <concurrency> [prefork|solo]
 * BENCH_PROCESSES=n overrides the default number of prefork children (for
 * experiments; the published table uses the default). BENCH_TASK_EVENTS=1
 * runs it with task events on (`celeriac worker -E`), to measure their cost.
 * Prints READY once consuming; SIGTERM stops it gracefully (and lets
 * --cpu-prof write its profile).
 */
import { createWorker } from '../../dist/index.js';

const concurrency = Number(process.argv[2] ?? '10');
const pool = process.argv[3] ?? 'prefork';
const appModule = new URL('../apps/celeriac-app.mjs', import.meta.url).href;
const { app } = await import(appModule);

const processes = process.env.BENCH_PROCESSES ? Number(process.env.BENCH_PROCESSES) : undefined;
const taskEvents = process.env.BENCH_TASK_EVENTS === '1';
const worker = createWorker({ app, appModule, concurrency, pool, ...(processes ? { processes } : {}), ...(taskEvents ? { taskEvents } : {}) });
await worker.start();
// The variant counts only if the app really uses it (see lib/security.ts).
const s = app.security;
const variant = process.env.BENCH_SECURITY ?? 'plain';
const security = variant === 'ed25519' || variant === 'rsa' ? typeof s.sign === 'function' && typeof s.decodeBody === 'function' : variant === 'encrypted' ? s.resultSealer != null : true;
process.stdout.write(`READY ${JSON.stringify({ pid: process.pid, security })}\n`);

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  const st = worker.stats();
  await worker.stop();
  await app.close();
  process.stderr.write(`worker stopped: ${JSON.stringify({ processed: st.processed, succeeded: st.succeeded, failed: st.failed, rejected: st.rejected })}\n`);
  process.exit(0);
};
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());
