/**
 * The dashboard model on the embedded SQLite broker (Celeriac's default when
 * nothing is configured): events, queue depth and dead letters, and a pause,
 * through the same Broker interface as Redis and RabbitMQ.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createApp } from '../../../src/client/app.ts';
import { createDashboardModel } from '../../../src/dashboard/model/index.ts';
import { sqliteUrlForPath } from '../../../src/transport/sqlite/open.ts';
import { createWorker } from '../../../src/worker/worker.ts';
import { captureLogger } from '../../helpers/app-fixture.ts';
import { sleep, waitFor } from '../../helpers/services.ts';

describe('dashboard model on the embedded SQLite broker', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dash-sqlite-broker-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('sees tasks and workers, reads depth and dead letters, pauses and resumes', async () => {
    const url = sqliteUrlForPath(join(dir, 'broker.db'));
    const queue = 'dash-sq';
    const { logger } = captureLogger('warn');
    const app = createApp({ brokerUrl: url, resultBackend: url, taskDefaultQueue: queue, taskSendSentEvent: true, workerControlAllow: ['@all'], logger });
    const model = await createDashboardModel({ app, inspectIntervalMs: 500, store: { kind: 'sqlite', path: join(dir, 'dash.db') } });
    const worker = createWorker({ app, pool: 'solo', concurrency: 2, nodeName: 'sq@dash', taskEvents: true, heartbeatIntervalS: 0.5, queues: [queue], shutdownTimeoutMs: 2000 });
    try {
      const add = app.task('sq.add', (x: number, y: number) => x + y);
      await worker.start();
      const r = await add.delay(20, 22);
      assert.equal(await r.get({ timeoutMs: 10_000 }), 42);
      const lost = await app.sendTask('sq.unknown', []);
      await waitFor(async () => (await model.task(r.id))?.state === 'SUCCESS', 10_000, 'the task in the model');
      assert.equal((await model.task(r.id))!.worker, 'sq@dash');
      await waitFor(async () => (await model.deadLetters(queue)).some((d) => d.id === lost.id), 10_000, 'the dead letter listed');
      await waitFor(() => model.worker('sq@dash')?.queues?.includes(queue) === true, 10_000, 'the worker\'s queues');

      assert.equal((await model.actions.pauseQueue(queue)).ok, true);
      await sleep(300);
      const waiting = await add.delay(1, 2);
      await waitFor(async () => (await model.queues()).find((q) => q.name === queue)?.depth === 1, 10_000, 'one message waiting');
      const resumed = await model.actions.resumeQueue(queue);
      assert.equal(resumed.ok, true, resumed.message);
      assert.equal(await waiting.get({ timeoutMs: 10_000 }), 3);
      assert.equal(model.health().ready, true, model.health().detail);
    } finally {
      await worker.stop();
      await model.close();
      await app.close();
    }
  });
});
