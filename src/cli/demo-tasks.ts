/**
 * The tasks of `celeriac demo` — also a small example app to start from.
 *
 * Run a worker for it yourself:
 *
 *     npx celeriac worker -A node_modules/celeriac/dist/cli/demo-tasks.js
 *
 * With no broker configured it uses the embedded SQLite broker and result
 * backend in `.celeriac/celeriac.db` under the working directory; set
 * CELERIAC_BROKER_URL / CELERIAC_RESULT_BACKEND to use Redis or RabbitMQ.
 */
import { createHash } from 'node:crypto';
import { createApp } from '../client/app.ts';
import { currentTask } from '../worker/context.ts';

export const app = createApp({ resultExpires: 3600 });

/** An error type the demo's failing task raises (stored as `ValueError`, as Python would). */
class ValueError extends Error {
  override name = 'ValueError';
}

/** demo.add(x, y) → x + y */
export const add = app.task('demo.add', (x: number, y: number) => x + y, { params: ['x', 'y'] });

/** demo.io(ms): waits `ms` milliseconds, like a task calling a slow service. */
export const io = app.task(
  'demo.io',
  async (ms: number) => {
    await new Promise((r) => setTimeout(r, ms));
    return ms;
  },
  { params: ['ms'] },
);

/** demo.hash(text, rounds): some CPU work; returns a SHA-256 chained `rounds` times. */
export const hash = app.task(
  'demo.hash',
  (text: string, rounds: number) => {
    let h = text;
    for (let i = 0; i < rounds; i++) h = createHash('sha256').update(h).digest('hex');
    return h.slice(0, 16);
  },
  { params: ['text', 'rounds'] },
);

/** demo.fail(): always raises ValueError — the demo expects exactly this failure. */
export const fail = app.task(
  'demo.fail',
  () => {
    throw new ValueError('this task fails on purpose');
  },
  { params: [] },
);

/** demo.flaky(times): asks to be retried `times` times (0.1 s apart), then succeeds and reports its retries. */
export const flaky = app.task(
  'demo.flaky',
  (times: number) => {
    const { retries } = currentTask().request;
    if (retries < times) currentTask().retry({ countdown: 0.1, exc: new Error(`transient failure ${retries + 1} of ${times}`) });
    return { retries };
  },
  { params: ['times'], maxRetries: 5 },
);
