/**
 * ts_tasks.ts plus the tasks of the canvas interop tests; harness_tasks.py
 * has the same names. `tasks.mark` records an (old-style) errback call in
 * the Redis list `canvas:errbacks` of the result backend's database as
 * `ts:<task id>`; `tasks.on_error` is a new-style errback
 * `(request, exc, traceback)` and records `ts-new:<task id>`.
 */
import { Redis } from 'ioredis';
import { app } from './ts_tasks.ts';
import type { ErrbackRequest } from '../../../src/client/canvas/errback-request.ts';

export { app };

let redis: Redis | undefined;
const client = (): Redis => (redis ??= new Redis(process.env.CELERIAC_RESULT_BACKEND ?? 'redis://127.0.0.1:6379/1', { lazyConnect: false }));

/** tasks.tsum(values) -> sum(values) */
export const tsum = app.task('tasks.tsum', (values: number[]) => values.reduce((a, b) => a + b, 0), { params: ['values'] });

/** tasks.side(*args) -> "ts": which language ran it. */
export const side = app.task('tasks.side', (..._args: unknown[]) => 'ts');

/** tasks.mark(task_id): an old-style errback. */
export const mark = app.task('tasks.mark', async (taskId: string) => {
  await client().rpush('canvas:errbacks', `ts:${taskId}`);
  return taskId;
}, { params: ['task_id'] });

/** tasks.on_error(request, exc, traceback): a new-style errback, called in the worker. */
export const onError = app.task('tasks.on_error', async (request: ErrbackRequest, exc: Error, _traceback: string | null) => {
  // A RemoteTaskError names the Python-side type of the failure (excType).
  await client().rpush('canvas:errbacks', `ts-new:${request.id}:${(exc as Error & { excType?: string }).excType ?? exc.name}`);
});
