/**
 * The event consumer (receiver, state, `celeriac events`) with Python Celery 5.2.6
 * on a private Redis, in kombu's pub/sub layout.
 */
import { after, before, describe } from 'node:test';
import type { Broker } from '../../../src/core/broker.ts';
import { resolveSettings } from '../../../src/config/options.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { createRedisBroker } from '../../../src/transport/redis/broker.ts';
import { eventsInteropCases } from '../../helpers/events-interop.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { hasPythonCelery } from '../../helpers/services.ts';

describe('event consumer interop with Python Celery (Redis)', () => {
  const ready = hasRedisServer() && hasPythonCelery();
  let redis: RedisServer | undefined;
  const open: Broker[] = [];
  before(async () => {
    if (ready) redis = await startRedisServer();
  });
  after(async () => {
    await Promise.allSettled(open.map((b) => b.close()));
    await redis?.stop();
  });
  eventsInteropCases({
    ready: () => ready,
    what: 'redis-server and python3-celery',
    broker: async () => {
      const b = createRedisBroker({ url: redis!.url(0), logger: createLogger({ level: 'silent' }), settings: resolveSettings({}) });
      open.push(b);
      return b;
    },
    env: () => ({ CELERY_BROKER_URL: redis!.url(0), CELERY_RESULT_BACKEND: redis!.url(1) }),
  });
});
