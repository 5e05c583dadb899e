/**
 * A BullMQ worker process for the benchmark (in-process no-op handler, the
 * way BullMQ is normally used). Usage: bullmq-worker.ts <concurrency>.
 * Connects and prints READY without fetching; the line "go" on stdin starts
 * processing (`autorun: false` + `run()`). Completed jobs and their return
 * values stay in Redis (BullMQ's default `removeOnComplete: false`).
 */
import { createInterface } from 'node:readline';
import { BULL_QUEUE, loadBullmq } from '../lib/anchors.ts';

const concurrency = Number(process.argv[2] ?? '10');
const { Worker } = await loadBullmq();
const connection = { host: '127.0.0.1', port: Number(process.env.BENCH_REDIS_PORT), maxRetriesPerRequest: null };
const worker = new Worker(BULL_QUEUE, async () => null, { connection, concurrency, autorun: false });
worker.on('error', (err) => process.stderr.write(`bullmq worker error: ${String(err)}\n`));
await worker.waitUntilReady();
process.stdout.write(`READY ${JSON.stringify({ pid: process.pid })}\n`);

createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim() === 'go') void worker.run();
});
const stop = async (): Promise<void> => {
  await worker.close();
  process.exit(0);
};
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());
