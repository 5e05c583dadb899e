/**
 * The prefork supervisor: child processes consume and run tasks; hard time
 * limits kill a stuck child, crashes are settled and children replaced.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { RemoteTaskError } from '../../../src/errors.ts';
import { createWorker, type WorkerHandle } from '../../../src/worker/worker.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { requireService, waitFor } from '../../helpers/services.ts';

const MODULE = new URL('./apps/limits-tasks.ts', import.meta.url).href;
const ok = hasRedisServer();

describe('prefork supervisor', () => {
  let redis: RedisServer | undefined;
  let worker: WorkerHandle | undefined;
  let mod: typeof import('./apps/limits-tasks.ts');

  before(async () => {
    if (!ok) return;
    redis = await startRedisServer();
    process.env.CELERIAC_BROKER_URL = redis.url(0);
    process.env.CELERIAC_RESULT_BACKEND = redis.url(1);
    process.env.CELERIAC_LOG_LEVEL = 'error';
    mod = await import('./apps/limits-tasks.ts');
    worker = createWorker({ app: mod.app, appModule: MODULE, concurrency: 4, processes: 2, shutdownTimeoutMs: 3000 });
    await worker.start();
  });
  after(async () => {
    await worker?.stop();
    await mod?.app.close();
    await redis?.stop();
  });

  it('runs tasks in child processes, never in the supervisor', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    const pids = new Set<number>();
    const results = await Promise.all(Array.from({ length: 20 }, () => mod.pid.delay()));
    for (const r of results) pids.add(await r.get({ timeoutMs: 10_000 }));
    assert.ok(!pids.has(process.pid));
    assert.ok(pids.size >= 1);
  });

  it('aggregates stats across children (reported every second)', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    await new Promise((r) => setTimeout(r, 1200));
    const s = worker!.stats();
    assert.ok(s.processed >= 20, `processed ${s.processed}`);
    assert.ok((s.byTask['limits.pid'] ?? 0) >= 20);
  });
  it('kills a child stuck past its hard time limit: FAILURE TimeLimitExceeded, child replaced, others continue', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    const stuck = await mod.spin.delay(60_000);
    await assert.rejects(stuck.get({ timeoutMs: 15_000 }), (e: unknown) => e instanceof RemoteTaskError && e.excType === 'TimeLimitExceeded' && e.excMessage[0] === 1);
    // The pool recovers: new tasks run.
    const after = await Promise.all(Array.from({ length: 8 }, (_, i) => mod.nap.delay(i)));
    for (const r of after) assert.match(String(await r.get({ timeoutMs: 15_000 })), /napped/);
    await waitFor(() => worker!.stats().processed >= 0, 100, 'stats');
  });

  it('soft time limit: the task sees its signal abort and fails with SoftTimeLimitExceeded', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    const r = await mod.polite.delay();
    await assert.rejects(r.get({ timeoutMs: 10_000 }), { excType: 'SoftTimeLimitExceeded' });
  });

  it('a crash with acksLate + rejectOnWorkerLost: the message is requeued at once and runs again', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    const t0 = Date.now();
    const r = await mod.crashOnce.delay();
    assert.equal(await r.get({ timeoutMs: 15_000 }), 'survived');
    assert.ok(Date.now() - t0 < 10_000, 'requeued by the supervisor, not after the 1 h visibility timeout');
  });

  it('a crash with early ack: FAILURE WorkerLostError, nobody waits forever', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    const r = await mod.crash.delay();
    await assert.rejects(r.get({ timeoutMs: 15_000 }), { excType: 'WorkerLostError' });
    assert.equal(await (await mod.nap.delay(1)).get({ timeoutMs: 15_000 }), 'napped 1');
  });

});

