/**
 * Quorum queues and what they change (issue 22): `deliveryLimit` becomes
 * `x-delivery-limit` with an at-least-once dead-letter into `<queue>.dlq`
 * (declared first, so RabbitMQ never drops a message past the limit);
 * settings quorum queues cannot honour are refused with a clear message.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { connect } from 'amqplib';
import { createAmqpBroker } from '../../../src/transport/amqp/broker.ts';
import { amqpSettings } from '../../../src/transport/amqp/options.ts';
import { taskQueueDeclaration } from '../../../src/transport/amqp/topology.ts';
import { JSON_SERIALIZER } from '../../../src/codec/serializers.ts';
import { resolveSettings } from '../../../src/config/options.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { newId } from '../../../src/protocol/ids.ts';
import { buildTaskMessage } from '../../../src/protocol/task-message.ts';
import { requireService, sleep, waitFor } from '../../helpers/services.ts';
import { createTestVhost, hasRabbitmq, listQueues, type TestVhost } from './support/rabbit.ts';

const ready = hasRabbitmq();

describe('quorum queues: delivery limit and refusals', () => {
  let vh: TestVhost;
  before(async () => {
    if (ready) vh = await createTestVhost('quorum-limit');
  });
  after(async () => {
    if (ready) await vh.delete();
  });

  it('refuses what quorum queues cannot do: priorities, a delivery limit on classic queues', () => {
    assert.throws(() => amqpSettings(resolveSettings({ taskDefaultQueueType: 'quorum', taskQueueMaxPriority: 5 })), /quorum queues have no message priorities/);
    assert.throws(() => amqpSettings(resolveSettings({ brokerTransportOptions: { deliveryLimit: 3 } })), /deliveryLimit needs taskDefaultQueueType: quorum/);
    assert.throws(() => amqpSettings(resolveSettings({ taskDefaultQueueType: 'quorum', brokerTransportOptions: { deliveryLimit: 0 } })), /whole number ≥ 1/);
    const d = taskQueueDeclaration('q', amqpSettings(resolveSettings({ taskDefaultQueueType: 'quorum', brokerTransportOptions: { deliveryLimit: 3 } })));
    assert.deepEqual(d.arguments, {
      'x-queue-type': 'quorum', 'x-delivery-limit': { '!': 'int', value: 3 }, 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': 'q.dlq',
      'x-dead-letter-strategy': 'at-least-once', 'x-overflow': 'reject-publish',
    });
    assert.equal(d.deadLetter?.name, 'q.dlq');
  });

  it('a message requeued past x-delivery-limit lands in <queue>.dlq, not dropped', async (t) => {
    if (!requireService(t, ready, 'RabbitMQ')) return;
    const broker = createAmqpBroker({ url: vh.url(), logger: createLogger({ level: 'silent' }), settings: resolveSettings({ taskDefaultQueueType: 'quorum', brokerTransportOptions: { deliveryLimit: 2 } }) });
    const queue = `ql-${newId().slice(0, 8)}`;
    try {
      await broker.publish(queue, buildTaskMessage({ task: 't.n', id: 'poison', args: [], kwargs: {} }, JSON_SERIALIZER));
      const qs = await listQueues(vh.vhost);
      assert.equal(qs.find((q) => q.name === queue)?.type, 'quorum');
      assert.equal(qs.find((q) => q.name === `${queue}.dlq`)?.type, 'quorum');
      // A consumer that keeps giving the message back (as a crashing worker would).
      const conn = await connect(vh.url());
      const ch = await conn.createChannel();
      let deliveries = 0;
      await ch.prefetch(1);
      await ch.consume(queue, (m) => {
        if (!m) return;
        deliveries++;
        ch.nack(m, false, true);
      });
      await waitFor(async () => (await listQueues(vh.vhost)).find((q) => q.name === `${queue}.dlq`)?.messages === 1, 20_000, 'the message in the dead-letter queue');
      await sleep(200);
      t.diagnostic(`${deliveries} deliveries before RabbitMQ dead-lettered it`);
      assert.ok(deliveries >= 2 && deliveries <= 3, `${deliveries} deliveries`);
      await conn.close();
    } finally {
      await broker.close();
    }
  });
});
