/** Remote control of a prefork `celeriac worker` by Python Celery 5.2.6, on a private Redis. */
import { controlPreforkCases } from '../../helpers/control-prefork-interop.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { hasPythonCelery } from '../../helpers/services.ts';

let redis: RedisServer | undefined;
controlPreforkCases({
  what: 'Redis',
  ready: hasRedisServer() && hasPythonCelery(),
  needs: 'redis-server and python3-celery',
  setup: async () => {
    redis = await startRedisServer();
    return { brokerUrl: redis.url(0), backendUrl: redis.url(1) };
  },
  teardown: async () => redis?.stop(),
});
