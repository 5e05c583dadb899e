/**
 * Issue 20 #15 through real brokers: a v2 header signature (covering
 * argsrepr, kwargsrepr, origin, priority and correlation_id) survives the
 * Redis envelope and AMQP basic properties unchanged — with and without a
 * priority — and a signed message whose argsrepr or priority is changed in
 * the queue is dead-lettered as a bad signature instead of running.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createApp, type App } from '../../../src/client/app.ts';
import { generateSigningKey } from '../../../src/codec/signing/index.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { newId } from '../../../src/protocol/ids.ts';
import { startCeleriacWorker, type CeleriacWorkerProcess } from '../../helpers/celeriac-worker.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { requireService, waitFor } from '../../helpers/services.ts';
import { createTestVhost, hasRabbitmq, type TestVhost } from '../amqp/support/rabbit.ts';

const SECURE_TASKS = new URL('./apps/secure_tasks.ts', import.meta.url).pathname;
const ring = generateSigningKey('ed25519', 'fields-k1');
const logger = createLogger({ level: 'silent' });
const ok = hasRedisServer();

describe('v2 header signature over real transports (issue 20 #15)', () => {
  let redis: RedisServer | undefined;
  let vh: TestVhost | undefined;
  const workers: CeleriacWorkerProcess[] = [];
  const apps: App[] = [];
  before(async () => {
    if (ok) redis = await startRedisServer();
  });
  after(async () => {
    await Promise.all(apps.map((a) => a.close()));
    await Promise.all(workers.map((w) => w.stop()));
    await redis?.stop();
    await vh?.delete();
  });
  const client = (broker: string, backend: string): App => {
    const app = createApp({ brokerUrl: broker, resultBackend: backend, logger, env: { NODE_ENV: 'test' }, securitySigningKeys: ring.signingLine });
    apps.push(app);
    return app;
  };
  const worker = async (broker: string, backend: string): Promise<CeleriacWorkerProcess> => {
    const w = await startCeleriacWorker({ module: SECURE_TASKS, args: ['-c', '1', '--processes', '1'], env: { CELERIAC_BROKER_URL: broker, CELERIAC_RESULT_BACKEND: backend, CELERIAC_VERIFY_KEYS: ring.verifyingLine } });
    workers.push(w);
    return w;
  };

  it('Redis: signed tasks with and without priority run; edited argsrepr or priority is refused', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    const app = client(redis!.url(0), redis!.url(1));
    // Queued before the worker starts, so the attacker can edit them in place.
    const idA = newId();
    const idP = newId();
    await app.sendTask('tasks.add', [1, 1], {}, { taskId: newId() });
    await app.sendTask('tasks.add', [2, 2], {}, { taskId: idA });
    await app.sendTask('tasks.add', [3, 3], {}, { taskId: idP, priority: 3 });
    const raw = redis!.client(0);
    const edit = async (id: string, fn: (env: { headers: Record<string, unknown>; properties: Record<string, unknown> }) => void): Promise<void> => {
      for (const key of ['celery', 'celery\x06\x163']) {
        const items = await raw.lrange(key, 0, -1);
        for (const [i, item] of items.entries()) {
          const env = JSON.parse(item) as { headers: Record<string, unknown>; properties: Record<string, unknown> };
          if (env.headers.id !== id) continue;
          fn(env);
          await raw.lset(key, i, JSON.stringify(env));
          return;
        }
      }
      assert.fail(`task ${id} not found in the queue`);
    };
    await edit(idA, (e) => void (e.headers.argsrepr = "('innocent',)"));
    await edit(idP, (e) => void (e.properties.priority = 0));
    await worker(redis!.url(0), redis!.url(1));
    const r1 = await app.sendTask('tasks.add', [20, 22], {}, { priority: 5 });
    assert.equal(await r1.get({ timeoutMs: 15_000 }), 42, 'a priority survives the Redis envelope');
    await waitFor(async () => (await raw.llen('celery.dlq')) === 2, 15_000, 'the two edited messages dead-lettered');
    const dead = (await raw.lrange('celery.dlq', 0, -1)).map((d) => JSON.parse(d) as { reason: string; id?: string });
    assert.ok(dead.every((d) => /does not verify|bad.signature/i.test(d.reason)), JSON.stringify(dead));
  });

  it('AMQP: priority and correlation_id arrive as signed', async (t) => {
    if (!requireService(t, ok && hasRabbitmq(), 'redis-server and RabbitMQ')) return;
    vh = await createTestVhost('sigfields');
    const app = client(vh.url(), redis!.url(3));
    await worker(vh.url(), redis!.url(3));
    assert.equal(await (await app.sendTask('tasks.add', [1, 2])).get({ timeoutMs: 15_000 }), 3);
    assert.equal(await (await app.sendTask('tasks.add', [2, 5], {}, { priority: 7 })).get({ timeoutMs: 15_000 }), 7);
  });
});
