/** Tasks for the prefork remote-control tests (test/integration/worker/control-prefork.test.ts). */
import { createApp } from '../../../../src/client/app.ts';
import { currentTask } from '../../../../src/worker/context.ts';

// Destructive commands are opt-in per deployment (docs/control-security.md); these tests opt in to all of them.
export const app = createApp({ workerControlAllow: ['@all'] });

export const add = app.task('ctl.add', (x: number, y: number) => x + y);

/** Sleeps, and stops when its abort signal fires. */
export const nap = app.task('ctl.nap', async (ms: number) => {
  const { signal } = currentTask();
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => (clearTimeout(t), reject(signal.reason)));
  });
  return process.pid;
});

/** Sleeps and ignores its abort signal. */
export const stubborn = app.task('ctl.stubborn', async (ms: number) => {
  await new Promise((r) => setTimeout(r, ms));
  return 'finished anyway';
});

/** Blocks its process's event loop (only killing the process stops it). */
export const spin = app.task('ctl.spin', (ms: number) => {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    // busy
  }
  return 'done spinning';
});
