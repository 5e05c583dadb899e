/**
 * The TypeScript twin of harness_tasks.py: the same task names, so Python
 * clients can call a Celeriac worker and vice versa. Configured from the
 * environment (URLs from CELERIAC_BROKER_URL / CELERIAC_RESULT_BACKEND).
 */
import { createApp } from '../../../src/client/app.ts';
import { currentTask } from '../../../src/worker/context.ts';

const env = process.env;
const serializer = env.CELERIAC_SERIALIZER === 'msgpack' ? 'msgpack' : 'json';

export const app = createApp({
  taskSerializer: serializer,
  resultSerializer: serializer,
  acceptContent: ['json', 'msgpack'],
  taskAcksLate: env.CELERIAC_ACKS_LATE === '1',
  taskRejectOnWorkerLost: env.CELERIAC_ACKS_LATE === '1',
  resultExtended: env.CELERIAC_RESULT_EXTENDED === '1',
  taskTrackStarted: env.CELERIAC_TRACK_STARTED === '1',
  brokerTransportOptions: { visibilityTimeout: env.CELERIAC_VISIBILITY ? Number(env.CELERIAC_VISIBILITY) : 3600 },
});

class ValueError extends Error {
  override name = 'ValueError';
}

/** tasks.add(x, y) */
export const add = app.task('tasks.add', (x: number, y: number) => x + y, { params: ['x', 'y'] });

/** tasks.echo(*args, **kwargs) -> {"args": [...], "kwargs": {...}} */
export const echo = app.task('tasks.echo', (...all: unknown[]) => ({ args: all.slice(0, -1), kwargs: all[all.length - 1] }), { kwargs: true });

/** tasks.fail(message) raises ValueError(message) */
export const fail = app.task(
  'tasks.fail',
  (message = 'boom') => {
    throw new ValueError(String(message));
  },
  { params: ['message'] },
);

/** tasks.sleep(seconds) */
export const sleep = app.task('tasks.sleep', async (seconds = 1) => {
  // A well-behaved long task: it stops when revoked with terminate (the task's AbortSignal).
  const { signal } = currentTask();
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(resolve, Number(seconds) * 1000);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
    }, { once: true });
  });
  return seconds;
}, { params: ['seconds'] });

/** tasks.flaky(x): retries twice with exponential backoff, then returns x. */
export const flaky = app.task(
  'tasks.flaky',
  (x: number) => {
    if (currentTask().request.retries < 2) currentTask().retry({ exc: new Error('transient') });
    return { x, retries: currentTask().request.retries };
  },
  { params: ['x'], retryBackoff: 0.2, retryJitter: false },
);

/** tasks.whoami(): which worker ran it (for mixed-pool tests). */
export const whoami = app.task('tasks.whoami', (tag: string) => ({ tag, worker: currentTask().request.hostname, pid: process.pid }), { params: ['tag'] });
