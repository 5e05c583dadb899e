/**
 * Every task ends (issue 21 #3, #4; issue 20 #3): a late-ack task that
 * crashes its process, passes its hard time limit or returns a result that
 * cannot be stored runs a bounded number of times, then ends with one
 * FAILURE record and (past the redelivery limit) a dead-letter entry with
 * the reason; innocent neighbours of a crash are requeued and succeed. On
 * Redis (a private server) and on RabbitMQ (the shared node, own vhost).
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { RemoteTaskError } from '../../../src/errors.ts';
import { createWorker, type WorkerHandle } from '../../../src/worker/worker.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { requireService, sleep, waitFor } from '../../helpers/services.ts';
import { createTestVhost, hasRabbitmq, type TestVhost } from '../amqp/support/rabbit.ts';

const MODULE = new URL('./apps/poison-tasks.ts', import.meta.url).href;
const hasRedis = hasRedisServer();

for (const engine of ['redis', 'amqp'] as const) {
  const ok = hasRedis && (engine === 'redis' || hasRabbitmq());
  describe(`poison tasks end (${engine})`, () => {
    let redis: RedisServer | undefined;
    let vhost: TestVhost | undefined;
    let worker: WorkerHandle | undefined;
    let mod: typeof import('./apps/poison-tasks.ts');
    const dir = mkdtempSync(join(tmpdir(), 'celeriac-poison-'));
    const log = join(dir, 'runs.log');
    const queue = `poison-${engine}-${process.pid}`;

    const runs = (id: string): number => (existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter((l) => l === id).length : 0);

    before(async () => {
      if (!ok) return;
      redis = await startRedisServer();
      if (engine === 'amqp') {
        vhost = await createTestVhost('poison');
        process.env.CELERIAC_BROKER_URL = vhost.url();
      } else {
        process.env.CELERIAC_BROKER_URL = redis.url(0);
      }
      process.env.CELERIAC_RESULT_BACKEND = redis.url(1);
      process.env.CELERIAC_LOG_LEVEL = process.env.TEST_LOG_LEVEL ?? 'fatal';
      process.env.TEST_RUN_LOG = log;
      process.env.TEST_QUEUE = queue;
      // A fresh module instance per engine (the app reads its URLs when created).
      mod = (await import(`./apps/poison-tasks.ts?${engine}`)) as typeof import('./apps/poison-tasks.ts');
      worker = createWorker({ app: mod.app, appModule: MODULE, concurrency: 4, processes: 1, shutdownTimeoutMs: 3000 });
      await worker.start();
    });
    after(async () => {
      await worker?.stop().catch(() => undefined);
      await mod?.app.close();
      await vhost?.delete();
      await redis?.stop();
      rmSync(dir, { recursive: true, force: true });
    });

    it('a task that always crashes its process (rejectOnWorkerLost) is dead-lettered after the redelivery limit, with one FAILURE', async (t) => {
      if (!requireService(t, ok, engine === 'amqp' ? 'redis-server and rabbitmq' : 'redis-server')) return;
      const r = await mod.crashAlways.delay();
      await assert.rejects(r.get({ timeoutMs: 60_000 }), (e: unknown) => e instanceof RemoteTaskError && e.excType === 'WorkerLostError' && /crashed its worker process 4 times/.test(String(e.excMessage[0])));
      // The default limit is 3 redeliveries: 4 runs, then no more.
      assert.equal(runs(r.id), 4);
      await sleep(2000);
      assert.equal(runs(r.id), 4);
      const broker = await mod.app.broker();
      // The FAILURE is stored before the message is moved to the dead-letter queue: wait for the second step.
      let entry: Awaited<ReturnType<typeof broker.deadLetters>>[number] | undefined;
      await waitFor(async () => (entry = (await broker.deadLetters(queue)).find((d) => d.message?.headers.id === r.id)) !== undefined, 15_000, 'dead-lettered');
      assert.ok(entry, 'dead-lettered');
      assert.match(entry.reason, /crashed its worker process 4 times/);
    });

    it('innocent tasks running beside a crash are requeued and succeed; the crashing task fails once it is known to be the cause', async (t) => {
      if (!requireService(t, ok, engine === 'amqp' ? 'redis-server and rabbitmq' : 'redis-server')) return;
      const naps = await Promise.all([1500, 1600, 1700].map((ms) => mod.nap.delay(ms)));
      await sleep(300);
      const crash = await mod.crashDefault.delay(200);
      await assert.rejects(crash.get({ timeoutMs: 60_000 }), { excType: 'WorkerLostError' });
      for (const n of naps) assert.match(String(await n.get({ timeoutMs: 60_000 })), /napped/);
      // First run beside the naps (a suspect), second run alone (the cause): then FAILURE, no third run.
      assert.equal(runs(crash.id), 2);
      await sleep(1500);
      assert.equal(runs(crash.id), 2);
    });

    it('a busy loop past its hard time limit fails with TimeLimitExceeded and does not run again', async (t) => {
      if (!requireService(t, ok, engine === 'amqp' ? 'redis-server and rabbitmq' : 'redis-server')) return;
      const r = await mod.spin.delay(30_000);
      await assert.rejects(r.get({ timeoutMs: 30_000 }), { excType: 'TimeLimitExceeded' });
      await sleep(3000);
      assert.equal(runs(r.id), 1);
    });

    it('a late-ack task whose result cannot be encoded ends as FAILURE EncodeError and runs once', async (t) => {
      if (!requireService(t, ok, engine === 'amqp' ? 'redis-server and rabbitmq' : 'redis-server')) return;
      const r = await mod.unencodable.delay();
      await assert.rejects(r.get({ timeoutMs: 15_000 }), { excType: 'EncodeError' });
      await sleep(1500);
      assert.equal(runs(r.id), 1);
    });
  });
}
