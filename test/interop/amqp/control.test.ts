/**
 * The operator's API and CLI (app.control, celeriac inspect/control/status)
 * against a Python Celery 5.2.6 worker on RabbitMQ (a private vhost).
 */
import { after, before, describe } from 'node:test';
import type { Broker } from '../../../src/core/broker.ts';
import { resolveSettings } from '../../../src/config/options.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { createAmqpBroker } from '../../../src/transport/amqp/broker.ts';
import { controlInteropCases } from '../../helpers/control-interop.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { hasPythonCelery } from '../../helpers/services.ts';
import { createTestVhost, hasRabbitmq, type TestVhost } from '../../integration/amqp/support/rabbit.ts';

describe('control interop with Python Celery (RabbitMQ)', () => {
  const ready = hasRabbitmq() && hasRedisServer() && hasPythonCelery();
  let vh: TestVhost | undefined;
  let redis: RedisServer | undefined;
  const open: Broker[] = [];
  before(async () => {
    if (!ready) return;
    vh = await createTestVhost('control');
    redis = await startRedisServer();
  });
  after(async () => {
    await Promise.allSettled(open.map((b) => b.close()));
    await redis?.stop();
    await vh?.delete();
  });
  describe('python worker', () => {
    controlInteropCases({
      ready: () => ready,
      what: 'RabbitMQ, redis-server and python3-celery',
      broker: async () => {
        const b = createAmqpBroker({ url: vh!.url(), logger: createLogger({ level: 'silent' }), settings: resolveSettings({}) });
        open.push(b);
        return b;
      },
      urls: () => ({ broker: vh!.url(), backend: redis!.url(1) }),
    });
  });
});
