/**
 * The operator's API and CLI (app.control, celeriac inspect/control/status)
 * against a Python Celery 5.2.6 worker on a private Redis.
 */
import { after, before, describe } from 'node:test';
import type { Broker } from '../../../src/core/broker.ts';
import { resolveSettings } from '../../../src/config/options.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { createRedisBroker } from '../../../src/transport/redis/broker.ts';
import { controlInteropCases } from '../../helpers/control-interop.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { hasPythonCelery } from '../../helpers/services.ts';

describe('control interop with Python Celery (Redis)', () => {
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
  describe('python worker', () => {
    controlInteropCases({
      ready: () => ready,
      what: 'redis-server and python3-celery',
      broker: async () => {
        const b = createRedisBroker({ url: redis!.url(0), logger: createLogger({ level: 'silent' }), settings: resolveSettings({}) });
        open.push(b);
        return b;
      },
      urls: () => ({ broker: redis!.url(0), backend: redis!.url(1) }),
    });
  });
});
