/**
 * A worker's follow-ups (retries, chain steps, callbacks, errbacks) go out
 * through the app's Producer, held to the same rules as `delay()`: the
 * task's own `queue` option and `taskRoutes`, queue caps (QueueFullError),
 * signing and send limits. In-memory broker, solo pool.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { JSON_SERIALIZER } from '../../../src/codec/serializers.ts';
import { buildTaskMessage } from '../../../src/protocol/task-message.ts';
import { newId } from '../../../src/protocol/ids.ts';
import type { SignatureDict } from '../../../src/protocol/types.ts';
import { RemoteTaskError } from '../../../src/errors.ts';
import { currentTask } from '../../../src/worker/context.ts';
import { memoryFixture } from '../../helpers/app-fixture.ts';

function sig(task: string, id: string, options: Record<string, unknown> = {}): SignatureDict {
  return { task, args: [], kwargs: {}, options: { task_id: id, ...options }, subtask_type: null, immutable: true } as unknown as SignatureDict;
}

describe('worker follow-ups go through the Producer', () => {
  it("a callback is sent to its task's own queue option (and taskRoutes), like delay()", async () => {
    const f = memoryFixture({ taskRoutes: { 't.routed': { queue: 'routed' } } });
    f.app.task('t.parent', () => 1);
    f.app.task('t.side', () => 2, { queue: 'side' });
    f.app.task('t.routed', () => 3);
    await f.startWorker({ queues: ['celery'] });
    const side = newId();
    const routed = newId();
    const parent = buildTaskMessage({ task: 't.parent', id: newId(), args: [], kwargs: {}, embed: { callbacks: [sig('t.side', side), sig('t.routed', routed)] } }, JSON_SERIALIZER);
    await f.broker.publish('celery', parent);
    assert.equal(await f.app.asyncResult(String(parent.headers.id)).get({ timeoutMs: 3000 }), 1);
    // Nobody consumes 'side' or 'routed': the callbacks wait there, not on 'celery'.
    assert.equal(await f.broker.queueLength('side'), 1);
    assert.equal(await f.broker.queueLength('routed'), 1);
    assert.equal(await f.broker.queueLength('celery'), 0);
    // A worker on those queues runs them.
    await f.startWorker({ queues: ['side', 'routed'] });
    assert.equal(await f.app.asyncResult(side).get({ timeoutMs: 3000 }), 2);
    assert.equal(await f.app.asyncResult(routed).get({ timeoutMs: 3000 }), 3);
    await f.close();
  });

  it("a signature's own queue still comes first", async () => {
    const f = memoryFixture();
    f.app.task('t.parent', () => 1);
    f.app.task('t.side', () => 2, { queue: 'side' });
    await f.startWorker({ queues: ['celery'] });
    const cb = newId();
    const parent = buildTaskMessage({ task: 't.parent', id: newId(), args: [], kwargs: {}, embed: { callbacks: [sig('t.side', cb, { queue: 'explicit' })] } }, JSON_SERIALIZER);
    await f.broker.publish('celery', parent);
    await f.app.asyncResult(String(parent.headers.id)).get({ timeoutMs: 3000 });
    assert.equal(await f.broker.queueLength('explicit'), 1);
    assert.equal(await f.broker.queueLength('side'), 0);
    await f.close();
  });

  it('a callback to a full queue is refused as delay() would be: the task ends FAILURE QueueFullError, the cap holds', async () => {
    const f = memoryFixture({ maxQueueLength: { side: 1 } });
    f.app.task('t.parent', () => 1, { acksLate: true });
    const filler = f.app.task('t.side', () => 2, { queue: 'side' });
    await filler.delay();
    await assert.rejects(filler.delay(), { name: 'QueueFullError' }, 'the cap applies to delay()');
    await f.startWorker({ queues: ['celery'], concurrency: 1 });
    const parent = buildTaskMessage({ task: 't.parent', id: newId(), args: [], kwargs: {}, embed: { callbacks: [sig('t.side', newId())] } }, JSON_SERIALIZER);
    await f.broker.publish('celery', parent);
    await assert.rejects(f.app.asyncResult(String(parent.headers.id)).get({ timeoutMs: 3000 }), (e: unknown) => e instanceof RemoteTaskError && e.state === 'FAILURE' && e.excType === 'QueueFullError');
    assert.equal(await f.broker.queueLength('side'), 1, 'the callback did not go out');
    assert.equal(await f.broker.queueLength('celery'), 0, 'the message was settled, not given back');
    await f.close();
  });

  it("a retry obeys its queue's cap as delay() would: the task ends FAILURE QueueFullError", async () => {
    const f = memoryFixture({ maxQueueLength: { celery: 1 } });
    let runs = 0;
    const retrying = f.app.task(
      't.retrying',
      () => {
        runs++;
        if (currentTask().request.retries === 0) currentTask().retry({ countdown: 0 });
        return 'ok';
      },
      { acksLate: true },
    );
    const other = f.app.task('t.other', () => 'other');
    // Sent before the worker starts: it reserves the first (prefetch 1, late ack) while the second fills the queue.
    const r = await retrying.delay();
    await assert.rejects(other.delay(), { name: 'QueueFullError' }, 'the cap applies to delay()');
    const filler = buildTaskMessage({ task: 't.other', id: newId(), args: [], kwargs: {} }, JSON_SERIALIZER);
    await f.broker.publish('celery', filler);
    await f.startWorker({ concurrency: 1, prefetchMultiplier: 1 });
    await assert.rejects(r.get({ timeoutMs: 3000 }), (e: unknown) => e instanceof RemoteTaskError && e.state === 'FAILURE' && e.excType === 'QueueFullError');
    assert.equal(await f.app.asyncResult(String(filler.headers.id)).get({ timeoutMs: 3000 }), 'other');
    assert.equal(runs, 1, 'the task was not run again');
    await f.close();
  });

  it("a callback obeys its task's send rate limit as delay() would: the task ends FAILURE RateLimitedError", async () => {
    const f = memoryFixture();
    f.app.task('t.parent', () => 1);
    const limited = f.app.task('t.limited', () => 2, { sendRateLimit: { rate: '1/h', burst: 1 } });
    await limited.delay();
    await assert.rejects(limited.delay(), { name: 'RateLimitedError' }, 'the limit applies to delay()');
    await f.startWorker();
    const parent = buildTaskMessage({ task: 't.parent', id: newId(), args: [], kwargs: {}, embed: { callbacks: [sig('t.limited', newId())] } }, JSON_SERIALIZER);
    await f.broker.publish('celery', parent);
    await assert.rejects(f.app.asyncResult(String(parent.headers.id)).get({ timeoutMs: 3000 }), (e: unknown) => e instanceof RemoteTaskError && e.excType === 'RateLimitedError');
    await f.close();
  });
});
