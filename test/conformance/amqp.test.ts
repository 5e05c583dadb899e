/**
 * The RabbitMQ engine's conformance run: registry and broker (it has no
 * result backend and no replay store), against the shared RabbitMQ in a
 * private vhost with its own user. Test queues carry `x-max-priority` (so
 * the suite's priority test sees RabbitMQ's higher-first order). On AMQP a
 * killed consumer's messages come back as soon as its connection drops.
 */
import { test } from 'node:test';
import { engine } from '../../src/transport/amqp/index.ts';
// After Celeriac, so that amqplib loads with Celeriac's header-depth guard.
import { connect } from 'amqplib';
import { resolveSettings } from '../../src/config/options.ts';
import { createLogger } from '../../src/observability/logging.ts';
import { brokerConformance } from './broker.ts';
import { registryConformance } from './registry.ts';
import { IN_CI } from '../helpers/services.ts';
import { consumeAndDie } from '../helpers/crash.ts';
import { createTestVhost, hasRabbitmq, type TestVhost } from '../integration/amqp/support/rabbit.ts';

const MAX_BYTES = 64 * 1024;

registryConformance(engine, (scheme) => `${scheme}://user:pw@localhost/vhost`);

if (!hasRabbitmq()) {
  test('amqp broker conformance', (t) => {
    if (IN_CI) throw new Error('RabbitMQ is required in CI (scripts/setup-test-services.sh starts it)');
    t.skip('RabbitMQ not running');
  });
} else {
  let vh: TestVhost;
  const logger = createLogger({ level: 'silent' });
  const settings = resolveSettings({ taskQueueMaxPriority: 10, decodeLimits: { maxBytes: MAX_BYTES } });
  brokerConformance('amqp', {
    priority: 'higher-first',
    setup: async () => {
      vh = await createTestVhost('conformance');
    },
    teardown: async () => vh.delete(),
    create: async () => engine.createBroker(vh.url(), { logger, settings }),
    redelivery: 'on-disconnect',
    crash: (queue, count, o) => consumeAndDie(vh.url(), queue, count, o.visibilityTimeout ?? 1),
    injectMalformed: async (queue) => {
      // Transport-level malformed on AMQP: a body over the decoding limit (the headers are RabbitMQ's to check).
      const c = await connect(vh.url());
      const ch = await c.createConfirmChannel();
      await ch.assertQueue(queue, { durable: true, arguments: { 'x-max-priority': 10 } });
      ch.sendToQueue(queue, Buffer.alloc(MAX_BYTES + 1, 0x61), { contentType: 'application/json', contentEncoding: 'utf-8', headers: { id: 'oversized-1' } });
      await ch.waitForConfirms();
      await c.close();
    },
    injectMalformedBroadcast: async (ex, rk) => {
      const c = await connect(vh.url());
      const ch = await c.createConfirmChannel();
      await ch.assertExchange(ex.name, ex.type, { durable: ex.durable });
      ch.publish(ex.name, rk, Buffer.alloc(MAX_BYTES + 1, 0x61), { contentType: 'application/json', contentEncoding: 'utf-8' });
      await ch.waitForConfirms();
      await c.close();
    },
  });
}
