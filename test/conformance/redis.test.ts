/**
 * The Redis engine's conformance run: registry, broker, result backend and
 * replay store, each suite on a redis-server of its own, every adapter made
 * through the engine descriptor.
 */
import { test } from 'node:test';
import { engine } from '../../src/transport/redis/index.ts';
import { resolveSettings } from '../../src/config/options.ts';
import { createLogger } from '../../src/observability/logging.ts';
import { backendConformance } from './backend.ts';
import { brokerConformance } from './broker.ts';
import { registryConformance } from './registry.ts';
import { replayStoreConformance } from './replay-store.ts';
import { fanoutChannel } from '../../src/transport/redis/fanout.ts';
import { consumeAndDie } from '../helpers/crash.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../helpers/redis-server.ts';
import { IN_CI } from '../helpers/services.ts';

registryConformance(engine, (scheme) => `${scheme}://user:pw@localhost/0`);

if (!hasRedisServer()) {
  test('redis conformance', (t) => {
    if (IN_CI) throw new Error('redis-server is required in CI');
    t.skip('redis-server not installed');
  });
} else {
  const logger = createLogger({ level: 'silent' });

  let brokerServer: RedisServer;
  brokerConformance('redis', {
    priority: 'lower-first',
    setup: async () => {
      brokerServer = await startRedisServer();
    },
    teardown: async () => brokerServer.stop(),
    create: async (o) =>
      engine.createBroker(brokerServer.url(0), { logger, settings: resolveSettings({ brokerTransportOptions: { visibilityTimeout: o?.visibilityTimeout ?? 3600 } }) }),
    crash: (queue, count, o) => consumeAndDie(brokerServer.url(0), queue, count, o.visibilityTimeout ?? 1),
    injectMalformed: async (queue) => {
      await brokerServer.client(0).lpush(queue, 'this is not json {');
    },
    injectMalformedBroadcast: async (ex, rk) => {
      await brokerServer.client(0).publish(fanoutChannel('', 0, ex, rk), 'this is not json {');
    },
  });

  let backendServer: RedisServer;
  backendConformance('redis', {
    shared: true,
    setup: async () => {
      backendServer = await startRedisServer();
    },
    teardown: async () => backendServer.stop(),
    create: async () => engine.createBackend!(backendServer.url(0), { logger, settings: resolveSettings({}) }),
  });

  let replayServer: RedisServer;
  replayStoreConformance('redis', {
    shared: true,
    setup: async () => {
      replayServer = await startRedisServer();
    },
    teardown: async () => replayServer.stop(),
    open: async () => engine.createReplayStore!({ url: replayServer.url(5), side: 'broker', keyPrefix: '', logger, settings: resolveSettings({}) }),
  });
}
