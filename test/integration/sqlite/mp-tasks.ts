/**
 * App module of the multi-process SQLite test's workers. Every execution
 * appends the task id to a ledger file of its process, so the test can count
 * how many times each task really ran (appends survive a SIGKILL).
 */
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { createApp } from '../../../src/client/app.ts';
import { currentTask } from '../../../src/worker/context.ts';

const env = process.env;
const ledgerDir = env.MP_LEDGER_DIR ?? '.';
const taskMs = Number(env.MP_TASK_MS ?? 0);

export const app = createApp({
  taskAcksLate: env.MP_ACKS_LATE === '1',
  taskRejectOnWorkerLost: env.MP_ACKS_LATE === '1',
  resultExpires: 3600,
  brokerTransportOptions: { visibilityTimeout: Number(env.MP_VISIBILITY ?? 3600) },
});

/** mp.double(n) → 2n, recorded in the ledger. */
export const double = app.task(
  'mp.double',
  async (n: number) => {
    appendFileSync(join(ledgerDir, `runs-${process.pid}.log`), `${currentTask().request.id}\n`);
    if (taskMs > 0) await new Promise((r) => setTimeout(r, taskMs));
    return n * 2;
  },
  { params: ['n'] },
);
