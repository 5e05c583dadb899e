import { test } from 'node:test';
import { createRedisBackend } from '../../src/transport/redis/backend.ts';
import { resolveSettings } from '../../src/config/options.ts';
import { createLogger } from '../../src/observability/logging.ts';
import { backendConformance } from './backend.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../helpers/redis-server.ts';
import { IN_CI } from '../helpers/services.ts';

if (!hasRedisServer()) {
  test('redis backend conformance', (t) => {
    if (IN_CI) throw new Error('redis-server is required in CI');
    t.skip('redis-server not installed');
  });
} else {
  let server: RedisServer;
  const logger = createLogger({ level: 'silent' });
  backendConformance('redis', {
    shared: true,
    setup: async () => {
      server = await startRedisServer();
    },
    teardown: async () => server.stop(),
    create: async () => createRedisBackend({ url: server.url(0), logger, settings: resolveSettings({}) }),
  });
}
