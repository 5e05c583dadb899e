/**
 * Celeriac worker events read by Python Celery 5.2.6's Receiver on a
 * private Redis (kombu's pub/sub layout).
 */
import { after, before, describe } from 'node:test';
import { eventsInteropCases } from '../../helpers/worker-events-interop.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { hasPythonCelery } from '../../helpers/services.ts';

describe('events interop with Python Celery (Redis)', () => {
  const ready = hasRedisServer() && hasPythonCelery();
  let redis: RedisServer | undefined;
  before(async () => {
    if (ready) redis = await startRedisServer();
  });
  after(async () => {
    await redis?.stop();
  });
  eventsInteropCases({
    ready: () => ready,
    what: 'redis-server and python3-celery',
    urls: () => ({ broker: redis!.url(0), backend: redis!.url(1) }),
  });
});
