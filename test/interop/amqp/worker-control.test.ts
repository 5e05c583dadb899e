/**
 * Remote control of a Celeriac worker by Python Celery 5.2.6's own tools
 * (celery inspect/status/control, app.control) on RabbitMQ (a private
 * vhost; results on a private Redis), beside a Python worker.
 */
import { after, before, describe } from 'node:test';
import { controlInteropCases } from '../../helpers/worker-control-interop.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { hasPythonCelery } from '../../helpers/services.ts';
import { createTestVhost, hasRabbitmq, type TestVhost } from '../../integration/amqp/support/rabbit.ts';

describe('remote control interop with Python Celery (RabbitMQ)', () => {
  const ready = hasRabbitmq() && hasRedisServer() && hasPythonCelery();
  let vh: TestVhost | undefined;
  let redis: RedisServer | undefined;
  before(async () => {
    if (!ready) return;
    vh = await createTestVhost('control');
    redis = await startRedisServer();
  });
  controlInteropCases({
    ready: () => ready,
    what: 'RabbitMQ, redis-server and python3-celery',
    urls: () => ({ broker: vh!.url(), backend: redis!.url(1) }),
  });
  after(async () => {
    await redis?.stop();
    await vh?.delete();
  });
});
