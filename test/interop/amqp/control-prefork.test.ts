/** Remote control of a prefork `celeriac worker` by Python Celery 5.2.6, on RabbitMQ (a private vhost; results on a private Redis). */
import { controlPreforkCases } from '../../helpers/control-prefork-interop.ts';
import { createTestVhost, hasRabbitmq, type TestVhost } from '../../integration/amqp/support/rabbit.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { hasPythonCelery } from '../../helpers/services.ts';

let redis: RedisServer | undefined;
let vh: TestVhost | undefined;
controlPreforkCases({
  what: 'RabbitMQ',
  ready: hasRabbitmq() && hasRedisServer() && hasPythonCelery(),
  needs: 'RabbitMQ, redis-server and python3-celery',
  setup: async () => {
    vh = await createTestVhost('ctlprefork');
    redis = await startRedisServer();
    return { brokerUrl: vh.url(), backendUrl: redis.url(1) };
  },
  teardown: async () => {
    await vh?.delete();
    await redis?.stop();
  },
});
