import { createRedisBroker } from '../../src/transport/redis/broker.ts';
import { resolveSettings } from '../../src/config/options.ts';
import { createLogger } from '../../src/observability/logging.ts';
import { brokerConformance } from './broker.ts';
import { fanoutChannel } from '../../src/transport/redis/fanout.ts';
import { consumeAndDie } from '../helpers/crash.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../helpers/redis-server.ts';
import { IN_CI } from '../helpers/services.ts';
import { test } from 'node:test';

if (!hasRedisServer()) {
  test('redis broker conformance', (t) => {
    if (IN_CI) throw new Error('redis-server is required in CI');
    t.skip('redis-server not installed');
  });
} else {
  let server: RedisServer;
  const logger = createLogger({ level: 'silent' });
  brokerConformance('redis', {
    priority: 'lower-first',
    setup: async () => {
      server = await startRedisServer();
    },
    teardown: async () => server.stop(),
    create: async (o) =>
      createRedisBroker({ url: server.url(0), logger, settings: resolveSettings({ brokerTransportOptions: { visibilityTimeout: o?.visibilityTimeout ?? 3600 } }) }),
    crash: (queue, count, o) => consumeAndDie(server.url(0), queue, count, o.visibilityTimeout ?? 1),
    injectMalformed: async (queue) => {
      await server.client(0).lpush(queue, 'this is not json {');
    },
    injectMalformedBroadcast: async (ex, rk) => {
      await server.client(0).publish(fanoutChannel('', 0, ex, rk), 'this is not json {');
    },
  });
}
