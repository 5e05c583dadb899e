/**
 * A Celeriac consumer renews the leases of what it holds, so a lease that
 * stopped being renewed means its process died (e.g. a supervisor SIGKILLed
 * with its children): those messages come back after the short lease (60 s
 * by default), not after the visibility timeout (an hour). Entries of other
 * consumers (kombu's, which renew nothing) keep the visibility timeout
 * (issue 21 #7).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createRedisBroker, type RedisBroker } from '../../../src/transport/redis/broker.ts';
import type { Delivery } from '../../../src/core/broker.ts';
import { JSON_SERIALIZER } from '../../../src/codec/serializers.ts';
import { resolveSettings } from '../../../src/config/options.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { encodeRedisEnvelope } from '../../../src/transport/redis/envelope.ts';
import { buildTaskMessage } from '../../../src/protocol/task-message.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { requireService, waitFor } from '../../helpers/services.ts';

const ok = hasRedisServer();

describe('redis leases of dead Celeriac consumers', () => {
  let redis: RedisServer | undefined;
  const brokers: RedisBroker[] = [];
  before(async () => {
    if (ok) redis = await startRedisServer();
  });
  after(async () => {
    for (const b of brokers) await b.close().catch(() => undefined);
    await redis?.stop();
  });

  it('restores a Celeriac delivery whose lease is older than the short lease, and leaves a kombu entry to the visibility timeout', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    const make = (): RedisBroker => {
      const b = createRedisBroker({ url: redis!.url(0), settings: resolveSettings({}), logger: createLogger({ level: 'silent' }) });
      brokers.push(b);
      return b;
    };
    const a = make();
    assert.equal(a.visibilityTimeoutS, 3600);
    assert.equal(a.leaseS, 60);
    await a.publish('lease-q', buildTaskMessage({ task: 't.n', id: 'ours', args: [], kwargs: {} }, JSON_SERIALIZER));
    const got: Delivery[] = [];
    const c = await a.consume(['lease-q'], { prefetch: 10 }, (d) => got.push(d));
    await waitFor(() => got.length === 1, 5000, 'delivery');
    await c.cancel();
    // A kombu-style entry (UUID tag) reserved at the same time.
    const raw = redis!.client(0);
    const kombuEnvelope = encodeRedisEnvelope(buildTaskMessage({ task: 't.n', id: 'theirs', args: [], kwargs: {} }, JSON_SERIALIZER), { exchange: '', routingKey: 'lease-q', deliveryTag: 'x' });
    await raw.hset('unacked', '6f1c2b8e-2a5e-4c1e-9f3e-0d6c1c9d7a10', JSON.stringify([JSON.parse(kombuEnvelope), '', 'lease-q']));
    await raw.zadd('unacked_index', String(Date.now() / 1000), '6f1c2b8e-2a5e-4c1e-9f3e-0d6c1c9d7a10');
    // Another worker's restore pass, 61 s later (nobody renewed since).
    const b = make();
    const restored = await b.restoreExpired(Date.now() + 61_000);
    assert.equal(restored, 1);
    const waiting = await raw.lrange('lease-q', 0, -1);
    assert.deepEqual(waiting.map((e) => (JSON.parse(e) as { headers: { id: string } }).headers.id), ['ours']);
    assert.equal(await raw.hexists('unacked', '6f1c2b8e-2a5e-4c1e-9f3e-0d6c1c9d7a10'), 1);
    // (That the first consumer's copy then reports itself stale is stale-lease.test.ts.)
  });
});
