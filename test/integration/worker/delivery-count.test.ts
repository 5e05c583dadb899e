/**
 * RabbitMQ quorum queues count redeliveries themselves (`x-delivery-count`),
 * and the worker bounds on that count (issue 21): a message returned more
 * than `taskMaxDeliveryCount` times is dead-lettered without running, with
 * the reason, even with no result backend and no loss-ledger entry (the
 * consumers that lost it were killed, or on another node). On the shared
 * RabbitMQ, own vhost, a quorum queue with a unique name.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createApp, type App } from '../../../src/client/app.ts';
import { newId } from '../../../src/protocol/ids.ts';
import { createWorker, type WorkerHandle } from '../../../src/worker/worker.ts';
import { captureLogger } from '../../helpers/app-fixture.ts';
// After Celeriac, so that amqplib loads behind Celeriac's guards.
import { connect } from 'amqplib';
import { requireService, sleep, waitFor } from '../../helpers/services.ts';
import { createTestVhost, hasRabbitmq, listQueues, type TestVhost } from '../amqp/support/rabbit.ts';

const ready = hasRabbitmq();

describe('x-delivery-count bounds redeliveries on quorum queues', () => {
  let vh: TestVhost;
  let app: App | undefined;
  let worker: WorkerHandle | undefined;
  before(async () => {
    if (ready) vh = await createTestVhost('dcount');
  });
  after(async () => {
    await worker?.stop().catch(() => undefined);
    await app?.close();
    if (ready) await vh.delete();
  });

  /** Take every ready message of `queue` on a fresh channel without acking, then close it: RabbitMQ returns (and counts) each. */
  async function bounce(queue: string): Promise<string[]> {
    const conn = await connect(vh.url());
    try {
      const ch = await conn.createChannel();
      const ids: string[] = [];
      for (;;) {
        const m = await ch.get(queue, { noAck: false });
        if (m === false) break;
        ids.push(String((m.properties.headers as Record<string, unknown>).id));
      }
      await ch.close();
      return ids;
    } finally {
      await conn.close();
    }
  }

  it('returned 4 times with a limit of 3: dead-lettered unrun with the reason, without a result backend; one returned twice runs', async (t) => {
    if (!requireService(t, ready, 'RabbitMQ')) return;
    const queue = `dc-${newId().slice(0, 8)}`;
    const { logger, logs } = captureLogger('warn');
    app = createApp({ brokerUrl: vh.url(), backend: null, logger, taskDefaultQueue: queue, taskDefaultQueueType: 'quorum', taskMaxDeliveryCount: 3, taskAcksLate: true });
    const runs: string[] = [];
    const run = app.task('dc.run', (label: string) => {
      runs.push(label);
      return label;
    });
    const over = await run.delay('over');
    for (let i = 0; i < 2; i++) assert.deepEqual(await bounce(queue), [over.id]);
    const under = await run.delay('under');
    for (let i = 0; i < 2; i++) assert.deepEqual((await bounce(queue)).sort(), [over.id, under.id].sort());
    assert.equal((await listQueues(vh.vhost)).find((q) => q.name === queue)?.type, 'quorum');

    worker = createWorker({ app, pool: 'solo', concurrency: 2, shutdownTimeoutMs: 2000 });
    await worker.start();
    const broker = await app.broker();
    await waitFor(async () => runs.length === 1 && (await broker.deadLetters(queue)).length === 1, 15_000, 'one run, one dead letter');
    await sleep(300);
    assert.deepEqual(runs, ['under'], 'the message past the limit never ran');
    const dead = await broker.deadLetters(queue);
    assert.equal(dead.length, 1);
    assert.equal(dead[0]!.message?.headers.id, over.id);
    assert.match(dead[0]!.reason, /^was redelivered 4 times by the broker without completing \(x-delivery-count\)$/);
    // RabbitMQ's count is not carried into the dead letter (a redriven copy starts from zero).
    assert.equal(dead[0]!.message?.headers['x-delivery-count'], undefined);
    assert.ok(logs.some((l) => l.id === over.id && /past taskMaxDeliveryCount 3; message dead-lettered/.test(String(l.msg))), 'logged with id and limit');
    assert.equal(await broker.queueLength(queue), 0);
  });
});
