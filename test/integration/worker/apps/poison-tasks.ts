/**
 * Poison tasks for the loss-ledger tests: each appends its id to the file
 * named by TEST_RUN_LOG before misbehaving, so a test can count the runs.
 */
import { appendFileSync } from 'node:fs';
import { createApp } from '../../../../src/client/app.ts';
import { currentTask } from '../../../../src/worker/context.ts';

export const app = createApp({ taskAcksLate: true, taskDefaultQueue: process.env.TEST_QUEUE ?? 'celery' });

function logRun(): void {
  const log = process.env.TEST_RUN_LOG;
  if (log) appendFileSync(log, `${currentTask().request.id}\n`);
}

/** Kills its process every time (rejectOnWorkerLost: redelivered until the limit). */
export const crashAlways = app.task(
  'poison.crash_always',
  () => {
    logRun();
    process.exit(13);
  },
  { rejectOnWorkerLost: true },
);

/** Kills its process every time, default rules (Celery's: FAILURE WorkerLostError once it is known to be the cause). */
export const crashDefault = app.task('poison.crash_default', async (delayMs: number) => {
  logRun();
  await new Promise((r) => setTimeout(r, delayMs));
  process.exit(14);
});

/** An innocent neighbour. */
export const nap = app.task('poison.nap', async (ms: number) => {
  logRun();
  await new Promise((r) => setTimeout(r, ms));
  return `napped ${ms}`;
});

/** A busy loop past its hard limit. */
export const spin = app.task(
  'poison.spin',
  (ms: number) => {
    logRun();
    const end = Date.now() + ms;
    while (Date.now() < end) {
      // busy
    }
    return 'done';
  },
  { timeLimit: 1 },
);

/** Returns what the JSON result serializer cannot encode (a cycle; a bigint is exact JSON now). */
export const unencodable = app.task('poison.unencodable', () => {
  logRun();
  const cycle: Record<string, unknown> = { name: 'cycle' };
  cycle.self = cycle;
  return cycle;
});
