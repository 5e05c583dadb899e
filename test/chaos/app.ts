/**
 * The chaos suite's app: late-ack tasks that record every run (one line per
 * start in a file of the running process, so a SIGKILL loses nothing) and
 * two poison tasks. Configured from the environment by the harness.
 */
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { createApp } from '../../src/client/app.ts';
import { currentTask } from '../../src/worker/context.ts';

const dir = process.env.CHAOS_LEDGER_DIR ?? '.';

export const app = createApp({
  taskAcksLate: true,
  // Celery's way to have killed tasks redelivered; poison is bounded by taskMaxRedeliveries.
  taskRejectOnWorkerLost: true,
  taskMaxRedeliveries: 3,
  resultExpires: 3600,
  // Supervisor SIGKILLs leave leases nobody renews: a short visibility timeout brings those messages back.
  brokerTransportOptions: { visibilityTimeout: Number(process.env.CHAOS_VISIBILITY ?? 10) },
});

function ran(): void {
  appendFileSync(join(dir, `runs-${process.pid}.log`), `${currentTask().request.id}\n`);
}

/** A normal task: 20–120 ms of asynchronous work. */
export const work = app.task('chaos.work', async (i: number) => {
  ran();
  await new Promise((r) => setTimeout(r, 20 + ((i * 7919) % 100)));
  return i;
});

/** Poison: allocates until its process hits the heap cap (--max-memory-per-child). */
export const oom = app.task('chaos.oom', () => {
  ran();
  const hog: number[][] = [];
  for (;;) hog.push(new Array(1 << 20).fill(Math.random()));
});

/** Poison: a busy loop past its hard time limit. */
export const spin = app.task(
  'chaos.spin',
  () => {
    ran();
    for (;;) {
      // busy: only killing the process stops it
    }
  },
  { timeLimit: 1 },
);
