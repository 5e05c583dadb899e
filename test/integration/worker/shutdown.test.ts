/**
 * The warm-shutdown contract (issue 15 item 4, issue 21 #6), measured: the
 * worker stops consuming, requeues what has not started, gives running
 * tasks the shutdown timeout, then terminates them as Celery does — a
 * late-ack task goes back to its queue with no FAILURE record (a waiting
 * client sees PENDING, then the real outcome), an early-ack task fails with
 * WorkerLostError. The whole stop takes the timeout plus a short grace,
 * not the timeout plus 10 or 15 s.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createWorker } from '../../../src/worker/worker.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { requireService, sleep } from '../../helpers/services.ts';

const MODULE = new URL('./apps/shutdown-tasks.ts', import.meta.url).href;
const ok = hasRedisServer();
const TIMEOUT_MS = 2000;

describe('warm shutdown', () => {
  let redis: RedisServer | undefined;
  let mod: typeof import('./apps/shutdown-tasks.ts');
  const queue = `shutdown-${process.pid}`;

  before(async () => {
    if (!ok) return;
    redis = await startRedisServer();
    process.env.CELERIAC_BROKER_URL = redis.url(0);
    process.env.CELERIAC_RESULT_BACKEND = redis.url(1);
    process.env.CELERIAC_LOG_LEVEL = 'fatal';
    process.env.TEST_QUEUE = queue;
    mod = await import('./apps/shutdown-tasks.ts');
  });
  after(async () => {
    await mod?.app.close();
    await redis?.stop();
  });

  it('terminates running tasks at the timeout: late ack requeued with no record, early ack FAILURE WorkerLostError, unstarted requeued', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    const broker = await mod.app.broker();
    await broker.purge(queue);
    const worker = createWorker({ app: mod.app, appModule: MODULE, concurrency: 2, processes: 1, prefetchMultiplier: 2, shutdownTimeoutMs: TIMEOUT_MS });
    await worker.start();
    const late = await mod.lateSleep.delay(8000);
    const early = await mod.earlySleep.delay(8000);
    await sleep(1000);
    const waiting = [await mod.lateSleep.delay(8000), await mod.lateSleep.delay(8000)];
    await sleep(500);
    const t0 = Date.now();
    await worker.stop();
    const elapsed = Date.now() - t0;
    assert.ok(elapsed >= TIMEOUT_MS - 100, `stopped after ${elapsed} ms, before the timeout`);
    assert.ok(elapsed < TIMEOUT_MS + 2500, `stopped after ${elapsed} ms (timeout ${TIMEOUT_MS} ms)`);
    // What a client sees.
    assert.equal(await late.status(), 'PENDING');
    for (const w of waiting) assert.equal(await w.status(), 'PENDING');
    await assert.rejects(early.get({ timeoutMs: 1000 }), { excType: 'WorkerLostError' });
    // The late-ack task and the two that never started are back on the queue.
    assert.equal(await broker.queueLength(queue), 3);
    await broker.purge(queue);
  });

  it('a task blocking its process past the timeout: the process is killed after a short grace, the late-ack message requeued, no record', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    const broker = await mod.app.broker();
    await broker.purge(queue);
    const worker = createWorker({ app: mod.app, appModule: MODULE, concurrency: 1, processes: 1, prefetchMultiplier: 1, shutdownTimeoutMs: TIMEOUT_MS });
    await worker.start();
    const spin = await mod.lateSpin.delay(20_000);
    await sleep(1000);
    const t0 = Date.now();
    await worker.stop();
    const elapsed = Date.now() - t0;
    assert.ok(elapsed < TIMEOUT_MS + 4000, `stopped after ${elapsed} ms (timeout ${TIMEOUT_MS} ms)`);
    assert.equal(await spin.status(), 'PENDING');
    assert.equal(await broker.queueLength(queue), 1);
    await broker.purge(queue);
  });
});
