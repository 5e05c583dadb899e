/** Long tasks for the shutdown-contract tests. */
import { createApp } from '../../../../src/client/app.ts';

export const app = createApp({ taskDefaultQueue: process.env.TEST_QUEUE ?? 'celery' });

/** Sleeps (asynchronous), acked late. */
export const lateSleep = app.task('shutdown.late_sleep', async (ms: number) => {
  await new Promise((r) => setTimeout(r, ms));
  return 'slept';
}, { acksLate: true });

/** Sleeps (asynchronous), acked early (Celery's default). */
export const earlySleep = app.task('shutdown.early_sleep', async (ms: number) => {
  await new Promise((r) => setTimeout(r, ms));
  return 'slept';
});

/** Blocks its event loop, acked late: only killing the process ends it. */
export const lateSpin = app.task('shutdown.late_spin', (ms: number) => {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    // busy
  }
  return 'spun';
}, { acksLate: true });
