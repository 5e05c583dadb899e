/**
 * A BullMQ worker process for the benchmark (in-process no-op handler, the
 * way BullMQ is normally used). Usage: bullmq-worker.mjs <concurrency>.
 * Plain JavaScript, like Celeriac's worker: no TypeScript loader in the
 * measured process (it would add its own memory and start-up work).
 * Connects and prints READY without fetching; the line "go" on stdin starts
 * processing (`autorun: false` + `run()`). Completed jobs and their return
 * values stay in Redis (BullMQ's default `removeOnComplete: false`).
 */
import { createInterface } from 'node:readline';
// bench/node_modules; the queue name is BULL_QUEUE in lib/anchors.ts.
import { Worker } from 'bullmq';

const BULL_QUEUE = 'bench';

const concurrency = Number(process.argv[2] ?? '10');
const connection = { host: '127.0.0.1', port: Number(process.env.BENCH_REDIS_PORT), maxRetriesPerRequest: null };
const worker = new Worker(BULL_QUEUE, async () => null, { connection, concurrency, autorun: false });
worker.on('error', (err) => process.stderr.write(`bullmq worker error: ${String(err)}\n`));
await worker.waitUntilReady();
process.stdout.write(`READY ${JSON.stringify({ pid: process.pid })}\n`);

createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim() === 'go') void worker.run();
});
const stop = async () => {
  await worker.close();
  process.exit(0);
};
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());
