/** Tasks that misbehave on purpose, for the prefork supervisor's tests. */
import { createApp } from '../../../../src/client/app.ts';
import { currentTask } from '../../../../src/worker/context.ts';

export const app = createApp({ taskAcksLate: process.env.TEST_ACKS_LATE === '1' });

/** Blocks its process's event loop (a CPU-bound task): only killing the process stops it. */
export const spin = app.task('limits.spin', (ms: number) => {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    // busy
  }
  return 'done spinning';
}, { timeLimit: 1 });

/** Sleeps asynchronously (an innocent neighbour). */
export const nap = app.task('limits.nap', async (ms: number) => {
  await new Promise((r) => setTimeout(r, ms));
  return `napped ${ms}`;
});

/** Honours its soft time limit through the abort signal. */
export const polite = app.task(
  'limits.polite',
  async () => {
    const { signal } = currentTask();
    await new Promise((resolve, reject) => {
      const t = setTimeout(resolve, 10_000);
      signal.addEventListener('abort', () => {
        clearTimeout(t);
        reject(signal.reason);
      });
    });
    return 'never';
  },
  { softTimeLimit: 0.3 },
);

/** Kills its own process the first time it runs (a crash), succeeds when redelivered. */
export const crashOnce = app.task(
  'limits.crash_once',
  () => {
    if (!currentTask().request.deliveryInfo.redelivered) process.exit(13);
    return 'survived';
  },
  { acksLate: true, rejectOnWorkerLost: true },
);

/** Always kills its process (early ack: the task fails with WorkerLostError). */
export const crash = app.task('limits.crash', () => process.exit(14));

/** Which process ran it. */
export const pid = app.task('limits.pid', () => process.pid);
