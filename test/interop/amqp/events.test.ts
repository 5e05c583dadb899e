/**
 * Celeriac worker events read by Python Celery 5.2.6's Receiver on
 * RabbitMQ (a private vhost, Celery's topology).
 */
import { after, before, describe } from 'node:test';
import { eventsInteropCases } from '../../helpers/worker-events-interop.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { hasPythonCelery } from '../../helpers/services.ts';
import { createTestVhost, hasRabbitmq, type TestVhost } from '../../integration/amqp/support/rabbit.ts';

describe('events interop with Python Celery (RabbitMQ)', () => {
  const ready = hasRabbitmq() && hasRedisServer() && hasPythonCelery();
  let vh: TestVhost | undefined;
  let redis: RedisServer | undefined;
  before(async () => {
    if (!ready) return;
    vh = await createTestVhost('events');
    redis = await startRedisServer();
  });
  after(async () => {
    await redis?.stop();
    await vh?.delete();
  });
  eventsInteropCases({
    ready: () => ready,
    what: 'RabbitMQ, redis-server and python3-celery',
    urls: () => ({ broker: vh!.url(), backend: redis!.url(1) }),
  });
});
