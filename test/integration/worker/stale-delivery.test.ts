/**
 * Stale deliveries never run (issue 21 #2): after the consumer's RabbitMQ
 * connection is closed, the messages its dead channel had prefetched (which
 * RabbitMQ has already requeued) are not started; only their redelivered
 * copies run. At most the task running at the close runs twice.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createApp, type App } from '../../../src/client/app.ts';
import { Worker } from '../../../src/worker/worker.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { requireService, sleep, waitFor } from '../../helpers/services.ts';
import { closeConnection, connectionsOf, createTestVhost, hasRabbitmq, type TestVhost } from '../amqp/support/rabbit.ts';

const ok = hasRabbitmq() && hasRedisServer();

for (const acksLate of [true, false]) {
  describe(`stale AMQP deliveries are dropped before they run (${acksLate ? 'late' : 'early'} ack)`, () => {
    let vh: TestVhost | undefined;
    let redis: RedisServer | undefined;
    let app: App | undefined;
    let worker: Worker | undefined;

    before(async () => {
      if (!ok) return;
      vh = await createTestVhost('stale');
      redis = await startRedisServer();
    });
    after(async () => {
      await worker?.stop().catch(() => undefined);
      await app?.close();
      await vh?.delete();
      await redis?.stop();
    });

    it('every prefetched message of a closed connection runs once; only the running one may run twice', async (t) => {
      if (!requireService(t, ok, 'RabbitMQ and redis-server')) return;
      app = createApp({ brokerUrl: vh!.url(), resultBackend: redis!.url(1), taskAcksLate: acksLate, taskDefaultQueue: `stale-${acksLate}` });
      const runs = new Map<number, number>();
      const nap = app.task('stale.nap', async (i: number) => {
        runs.set(i, (runs.get(i) ?? 0) + 1);
        await new Promise((r) => setTimeout(r, 400));
        return i;
      });
      const N = 8;
      const results = [];
      for (let i = 0; i < N; i++) results.push(await nap.delay(i));
      // One task at a time, the others held in the prefetch window.
      worker = new Worker({ app, pool: 'solo', concurrency: 1, prefetchMultiplier: 8, announce: false });
      await worker.start();
      await waitFor(() => runs.size === 1, 10_000, 'the first task running');
      const conn = (await connectionsOf(vh!.user)).find((c) => c.name.includes('consumer'));
      assert.ok(conn, 'consumer connection listed');
      await closeConnection(conn.pid, 'test: forced close');
      for (const r of results) await r.get({ timeoutMs: 30_000 });
      // A copy run twice would run after the first result is in: give the window time to drain.
      await sleep(N * 400 + 1500);
      const twice = [...runs].filter(([, n]) => n > 1).map(([i]) => i);
      // The bound: what was running when the connection closed (concurrency 1).
      assert.ok(twice.length <= 1, `ran twice: ${JSON.stringify(twice)} (runs ${JSON.stringify([...runs])})`);
      assert.equal(runs.size, N);
    });
  });
}
