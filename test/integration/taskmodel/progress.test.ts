/**
 * Progress states from a running task (`currentTask().updateState`), read
 * through AsyncResult while the task runs; the extended STARTED record.
 * Python's view of the same records is in test/interop/redis/taskmodel-progress.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { memoryFixture } from '../../helpers/app-fixture.ts';
import { currentTask } from '../../../src/worker/context.ts';
import { ValidationError } from '../../../src/errors.ts';
import type { ResultMeta } from '../../../src/protocol/result-meta.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('updateState: progress records', () => {
  it('PROGRESS states with their meta are seen while the task runs, then SUCCESS', async () => {
    const f = memoryFixture({ resultExtended: true });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const task = f.app.task(
      'tm.progress',
      async (n: number) => {
        for (let i = 1; i <= n; i++) {
          assert.equal(await currentTask().updateState('PROGRESS', { current: i, total: n }), true);
          if (i === 2) await gate;
        }
        return 'done';
      },
      { params: ['n'] },
    );
    try {
      await f.startWorker();
      const res = await task.delay(3);
      const seen: ResultMeta[] = [];
      const got = res.get({ timeoutMs: 10_000, onState: (m) => seen.push(m) });
      // Held at step 2: the record read now is PROGRESS 2/3.
      const deadline = Date.now() + 5000;
      while ((await res.status()) !== 'PROGRESS' || ((await res.info()) as { current: number }).current !== 2) {
        assert.ok(Date.now() < deadline, 'PROGRESS 2/3 never stored');
        await sleep(10);
      }
      const meta = await res.meta();
      assert.deepEqual(meta.result, { current: 2, total: 3 });
      assert.equal(meta.date_done, null);
      // Celery's update_state record carries the extended fields too (result_extended).
      assert.equal(meta.name, 'tm.progress');
      assert.deepEqual(meta.args, [3]);
      assert.deepEqual(meta.kwargs, {});
      assert.equal(meta.retries, 0);
      assert.equal(meta.queue, 'celery');
      assert.equal(typeof meta.worker, 'string');
      release();
      assert.equal(await got, 'done');
      assert.equal(await res.status(), 'SUCCESS');
      const states = seen.map((m) => `${m.status}:${JSON.stringify(m.result)}`);
      assert.ok(states.includes('PROGRESS:{"current":1,"total":3}') || states.includes('PROGRESS:{"current":2,"total":3}'), `onState saw ${states.join(', ')}`);
      assert.ok(states.every((s) => s.startsWith('PROGRESS:')), `only PROGRESS before the end: ${states.join(', ')}`);
    } finally {
      release();
      await f.close();
    }
  });

  it('an update not awaited lands before the final record, never after it (a slow PROGRESS cannot overwrite FAILURE)', async () => {
    const f = memoryFixture();
    // PROGRESS writes take 150 ms: without the wait for them, the FAILURE would be stored first and then overwritten.
    const store = f.backend.store.bind(f.backend);
    f.backend.store = async (records, options) => {
      if (records.some((r) => r.state === 'PROGRESS')) await sleep(150);
      return store(records, options);
    };
    const task = f.app.task('tm.fire-and-forget', () => {
      void currentTask().updateState('PROGRESS', { n: 1 });
      throw new Error('failed after reporting progress');
    });
    try {
      await f.startWorker();
      const res = await task.delay();
      await assert.rejects(res.get({ timeoutMs: 10_000 }), /failed after reporting progress/);
      await sleep(300);
      assert.equal(await res.status(), 'FAILURE');
    } finally {
      await f.close();
    }
  });

  it('ready states and bad names are refused at once with ValidationError', async () => {
    const f = memoryFixture();
    const errors: unknown[] = [];
    const task = f.app.task('tm.bad-state', () => {
      for (const s of ['SUCCESS', 'FAILURE', 'REVOKED', '', 'X'.repeat(65), 7 as unknown as string]) {
        try {
          void currentTask().updateState(s, {});
        } catch (err) {
          errors.push(err);
        }
      }
      return 'ok';
    });
    try {
      await f.startWorker();
      assert.equal(await (await task.delay()).get({ timeoutMs: 10_000 }), 'ok');
      assert.equal(errors.length, 6);
      for (const e of errors) assert.ok(e instanceof ValidationError, String(e));
      assert.match((errors[0] as Error).message, /SUCCESS is a ready state/);
    } finally {
      await f.close();
    }
  });

  it('without a result backend updateState resolves false', async () => {
    const f = memoryFixture({ backend: null });
    let stored: boolean | undefined;
    const task = f.app.task('tm.no-backend', async () => {
      stored = await currentTask().updateState('PROGRESS', { n: 1 });
    });
    try {
      await f.startWorker();
      await task.delay();
      const deadline = Date.now() + 5000;
      while (stored === undefined && Date.now() < deadline) await sleep(10);
      assert.equal(stored, false);
    } finally {
      await f.close();
    }
  });

  it('STARTED carries the result_extended fields when resultExtended is on, and not otherwise', async () => {
    for (const ext of [true, false]) {
      const f = memoryFixture({ resultExtended: ext, taskTrackStarted: true });
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      const task = f.app.task('tm.started', async (_a: number, _b: string) => gate, { params: ['a', 'b'] });
      try {
        await f.startWorker({ nodeName: 'tm@host' });
        void task;
        const res = await f.app.sendTask('tm.started', [1], { b: 'x' });
        const deadline = Date.now() + 5000;
        while ((await res.status()) !== 'STARTED') {
          assert.ok(Date.now() < deadline, 'STARTED never stored');
          await sleep(10);
        }
        const meta = await res.meta();
        const keys = Object.keys(meta);
        if (ext) {
          assert.deepEqual(keys, ['status', 'result', 'traceback', 'children', 'date_done', 'name', 'args', 'kwargs', 'worker', 'retries', 'queue', 'task_id']);
          assert.equal(meta.name, 'tm.started');
          assert.deepEqual(meta.args, [1]);
          assert.deepEqual(meta.kwargs, { b: 'x' });
          assert.equal(meta.worker, 'tm@host');
          assert.equal(meta.retries, 0);
          assert.equal(meta.queue, 'celery');
        } else {
          assert.deepEqual(keys, ['status', 'result', 'traceback', 'children', 'date_done', 'task_id']);
        }
        assert.deepEqual(Object.keys(meta.result as object), ['pid', 'hostname']);
        release();
        await res.get({ timeoutMs: 10_000 });
      } finally {
        release();
        await f.close();
      }
    }
  });
});
