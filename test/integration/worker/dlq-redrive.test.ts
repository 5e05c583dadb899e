/**
 * Issue 16's acceptance case for DLQ redrive: messages a Celeriac worker
 * dead-lettered for an unknown task name run after the task is deployed and
 * `celeriac dlq redrive` is run (the real CLI, a separate process); each
 * runs exactly once (nothing lost, nothing duplicated) and the dead-letter
 * queue is empty after. On Redis (a private server) and RabbitMQ (own vhost).
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { createApp, type App } from '../../../src/client/app.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { createWorker, type WorkerHandle } from '../../../src/worker/worker.ts';
import { runCli } from '../../helpers/control-interop.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { requireService, sleep, waitFor } from '../../helpers/services.ts';
import { createTestVhost, hasRabbitmq, type TestVhost } from '../amqp/support/rabbit.ts';

const N = 6;

for (const engine of ['redis', 'amqp'] as const) {
  const ok = hasRedisServer() && (engine === 'redis' || hasRabbitmq());
  describe(`dlq redrive after deploying the missing task (${engine})`, () => {
    let redis: RedisServer | undefined;
    let vhost: TestVhost | undefined;
    let url = '';
    const queue = `dlq-redrive-${engine}-${randomUUID().slice(0, 8)}`;
    const apps: App[] = [];
    const workers: WorkerHandle[] = [];

    before(async () => {
      if (!ok) return;
      redis = await startRedisServer();
      if (engine === 'amqp') vhost = await createTestVhost('dlqredrive');
      url = engine === 'amqp' ? vhost!.url() : redis.url(0);
    });
    after(async () => {
      await Promise.allSettled(workers.map((w) => w.stop()));
      await Promise.allSettled(apps.map((a) => a.close()));
      await vhost?.delete();
      await redis?.stop();
    });

    const makeApp = (): App => {
      const app = createApp({ brokerUrl: url, taskDefaultQueue: queue, logger: createLogger({ level: 'silent' }) });
      apps.push(app);
      return app;
    };

    it('dead-lettered "unregistered task" messages run once each after redrive', async (t) => {
      if (!requireService(t, ok, engine === 'amqp' ? 'RabbitMQ and redis-server' : 'redis-server')) return;
      // v1: the worker does not know dlq.late yet.
      const v1 = makeApp();
      const known = v1.task('dlq.known', () => 'ok');
      const w1 = createWorker({ app: v1, pool: 'solo', concurrency: 2, queues: [queue], shutdownTimeoutMs: 2000 });
      workers.push(w1);
      await w1.start();
      const tokens = Array.from({ length: N }, (_, i) => `late-${i}-${randomUUID().slice(0, 6)}`);
      const sent = await Promise.all(tokens.map((tok) => v1.sendTask('dlq.late', [tok])));
      await known.delay();
      const broker = await v1.broker();
      await waitFor(async () => (await broker.deadLetters(queue)).length === N, 15_000, 'the unknown-task messages dead-lettered');
      await w1.stop();
      const dead = await broker.deadLetters(queue);
      assert.ok(dead.every((d) => /unregistered task dlq\.late/.test(d.reason)), dead.map((d) => d.reason).join('; '));
      assert.deepEqual(new Set(dead.map((d) => d.message?.headers.id)), new Set(sent.map((r) => r.id)));

      // The operator lists them with their reason.
      const list = await runCli(['dlq', 'list', '-Q', queue, '--json', '-b', url]);
      assert.equal(list.code, 0, list.stderr);
      const listed = JSON.parse(list.stdout) as Array<{ id: string; task: string; reason: string }>;
      assert.equal(listed.length, N);
      assert.ok(listed.every((l) => l.task === 'dlq.late' && /unregistered task/.test(l.reason)));

      // v2: the task is deployed.
      const runs: string[] = [];
      const v2 = makeApp();
      v2.task('dlq.late', (tok: string) => {
        runs.push(tok);
        return tok;
      });
      const w2 = createWorker({ app: v2, pool: 'solo', concurrency: 2, queues: [queue], shutdownTimeoutMs: 2000 });
      workers.push(w2);
      await w2.start();

      const redrive = await runCli(['dlq', 'redrive', '-Q', queue, '--json', '-b', url]);
      assert.equal(redrive.code, 0, redrive.stderr);
      const out = JSON.parse(redrive.stdout) as Record<string, { moved: string[]; refused: unknown[] }>;
      assert.deepEqual(new Set(out[queue]!.moved), new Set(sent.map((r) => r.id)));
      assert.deepEqual(out[queue]!.refused, []);

      await waitFor(() => runs.length >= N, 15_000, 'the redriven tasks to run');
      // A second redrive finds nothing; give any duplicate time to show up.
      const again = await runCli(['dlq', 'redrive', '-Q', queue, '--json', '-b', url]);
      assert.deepEqual((JSON.parse(again.stdout) as Record<string, { moved: string[] }>)[queue]!.moved, []);
      await sleep(500);
      assert.deepEqual([...runs].sort(), [...tokens].sort(), 'each dead-lettered message ran exactly once');
      assert.equal((await broker.deadLetters(queue)).length, 0);
      assert.equal(await broker.queueLength(queue), 0);
    });
  });
}
