/**
 * Remote control of a Celeriac worker by Python Celery 5.2.6's own tools
 * (celery inspect/status/control, app.control) on a private Redis, beside
 * a Python worker.
 */
import { after, before, describe } from 'node:test';
import { controlInteropCases } from '../../helpers/worker-control-interop.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { hasPythonCelery } from '../../helpers/services.ts';

describe('remote control interop with Python Celery (Redis)', () => {
  const ready = hasRedisServer() && hasPythonCelery();
  let redis: RedisServer | undefined;
  before(async () => {
    if (ready) redis = await startRedisServer();
  });
  controlInteropCases({
    ready: () => ready,
    what: 'redis-server and python3-celery',
    urls: () => ({ broker: redis!.url(0), backend: redis!.url(1) }),
  });
  after(async () => {
    await redis?.stop();
  });
});
