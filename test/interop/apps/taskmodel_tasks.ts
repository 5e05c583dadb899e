/**
 * Tasks for the task-model interop tests (progress states, send options,
 * rpc://, dead-letter FAILURE records), configured from the environment
 * like ts_tasks.ts. Python's side is test/interop/harness/taskmodel_tasks.py.
 */
import { createApp } from '../../../src/client/app.ts';
import { currentTask } from '../../../src/worker/context.ts';

const env = process.env;

export const app = createApp({
  acceptContent: ['json', 'msgpack'],
  resultExtended: env.CELERIAC_RESULT_EXTENDED === '1',
  taskTrackStarted: env.CELERIAC_TRACK_STARTED === '1',
});

/** tasks.add(x, y) */
export const add = app.task('tasks.add', (x: number, y: number) => x + y, { params: ['x', 'y'] });

class ValueError extends Error {
  override name = 'ValueError';
}

/** tasks.fail(message) raises ValueError(message) */
export const fail = app.task(
  'tasks.fail',
  (message = 'boom') => {
    throw new ValueError(String(message));
  },
  { params: ['message'] },
);

/** tasks.sleep(seconds) */
export const sleep = app.task(
  'tasks.sleep',
  async (seconds = 1) => {
    await new Promise((r) => setTimeout(r, Number(seconds) * 1000));
    return seconds;
  },
  { params: ['seconds'] },
);

/** tm.progress(steps, pause): PROGRESS {current, total} at each step, `pause` seconds apart; returns 'done'. */
export const progress = app.task(
  'tm.progress',
  async (steps: number, pause: number) => {
    for (let i = 1; i <= steps; i++) {
      await currentTask().updateState('PROGRESS', { current: i, total: steps });
      await new Promise((r) => setTimeout(r, pause * 1000));
    }
    return 'done';
  },
  { params: ['steps', 'pause'] },
);

/** tm.request(): what the worker saw of the message (custom headers, time limits, retries, reply_to). */
export const request = app.task('tm.request', () => {
  const r = currentTask().request;
  return { retries: r.retries, timeLimit: r.timeLimit, replyTo: r.replyTo, task: r.task, tenant: r.headers.x_tenant };
});

/** tm.crash(): kills the process running it (a prefork child), so its supervisor stores FAILURE WorkerLostError. */
export const crash = app.task('tm.crash', () => {
  process.kill(process.pid, 'SIGKILL');
});
