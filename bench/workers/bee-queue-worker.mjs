/**
 * A bee-queue worker process for the benchmark (in-process no-op handler).
 * Usage: bee-queue-worker.mjs <concurrency> (plain JavaScript, like the others). Connects and prints READY; the
 * line "go" on stdin calls `process(concurrency, handler)`. Defaults kept:
 * the job record is rewritten with its final status and the id added to the
 * `succeeded` set (`removeOnSuccess: false`), and a `succeeded` event with
 * the return value is published (`sendEvents: true`); bee-queue keeps no
 * other copy of a return value.
 */
import { createInterface } from 'node:readline';
// bench/node_modules; the queue name is BEE_QUEUE_NAME in lib/anchors.ts.
import Queue from 'bee-queue';

const BEE_QUEUE_NAME = 'bench';

const concurrency = Number(process.argv[2] ?? '10');
const queue = new Queue(BEE_QUEUE_NAME, {
  redis: { host: '127.0.0.1', port: Number(process.env.BENCH_REDIS_PORT) },
  isWorker: true,
  getEvents: false,
});
queue.on('error', (err) => process.stderr.write(`bee-queue error: ${String(err)}\n`));
await queue.ready();
process.stdout.write(`READY ${JSON.stringify({ pid: process.pid })}\n`);

createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim() === 'go') queue.process(concurrency, async () => null);
});
const stop = async () => {
  await queue.close(5000).catch(() => undefined);
  process.exit(0);
};
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());
