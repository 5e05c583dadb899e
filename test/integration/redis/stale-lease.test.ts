/**
 * A Redis delivery whose lease could not be renewed for a visibility
 * timeout (Redis unreachable) may have been restored by another worker: it
 * reports itself stale, so the worker does not start it (issue 21 #2).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createRedisBroker, type RedisBroker } from '../../../src/transport/redis/broker.ts';
import type { Delivery } from '../../../src/core/broker.ts';
import { JSON_SERIALIZER } from '../../../src/codec/serializers.ts';
import { resolveSettings } from '../../../src/config/options.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { buildTaskMessage } from '../../../src/protocol/task-message.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { requireService, sleep, waitFor } from '../../helpers/services.ts';

const ok = hasRedisServer();

describe('redis lease staleness', () => {
  let redis: RedisServer | undefined;
  let broker: RedisBroker | undefined;
  before(async () => {
    if (ok) redis = await startRedisServer();
  });
  after(async () => {
    if (redis) process.kill(redis.pid, 'SIGCONT');
    await broker?.close().catch(() => undefined);
    await redis?.stop();
  });

  it('a held delivery is fresh while its lease is renewed, stale once renewals have failed for a visibility timeout', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    broker = createRedisBroker({ url: redis!.url(0), settings: resolveSettings({ brokerTransportOptions: { visibilityTimeout: 2 } }), logger: createLogger({ level: 'silent' }) });
    await broker.publish('lease-q', buildTaskMessage({ task: 't.n', id: 'lease-1', args: [], kwargs: {} }, JSON_SERIALIZER));
    const got: Delivery[] = [];
    await broker.consume(['lease-q'], { prefetch: 10 }, (d) => got.push(d));
    await waitFor(() => got.length === 1, 5000, 'delivery');
    // Renewals every 0.5 s keep it fresh well past the 2 s visibility timeout.
    await sleep(3000);
    assert.equal(got[0]!.stale, false);
    // Redis stops answering: no renewal lands.
    process.kill(redis!.pid, 'SIGSTOP');
    await sleep(2500);
    assert.equal(got[0]!.stale, true);
    process.kill(redis!.pid, 'SIGCONT');
  });
});
