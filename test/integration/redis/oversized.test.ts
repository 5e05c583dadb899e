/**
 * Oversized messages are never read whole (issue 20 #7): the reserve
 * script checks each envelope's length before handing it out; a larger one
 * goes to the queue's dead-letter list as a short record (its id, size and
 * the reason), and the messages behind it are served.
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
import { requireService, sleep, waitFor } from '../../helpers/services.ts';

const ok = hasRedisServer();

describe('redis oversized messages', () => {
  let redis: RedisServer | undefined;
  let broker: RedisBroker | undefined;
  before(async () => {
    if (ok) redis = await startRedisServer();
  });
  after(async () => {
    await broker?.close().catch(() => undefined);
    await redis?.stop();
  });

  it('an envelope over the limit is dead-lettered by the reserve script (truncated, with id and reason), never delivered; the next one is', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    const maxBytes = 64 * 1024;
    broker = createRedisBroker({ url: redis!.url(0), settings: resolveSettings({ decodeLimits: { maxBytes } }), logger: createLogger({ level: 'silent' }) });
    const big = buildTaskMessage({ task: 't.big', id: 'big-1', args: ['x'.repeat(2 * 1024 * 1024)], kwargs: {} }, JSON_SERIALIZER);
    const raw = redis!.client(0);
    // Pushed as a foreign producer would (our client would refuse to build it with these limits).
    await raw.lpush('big-q', encodeRedisEnvelope(big, { exchange: '', routingKey: 'big-q', deliveryTag: 'dt-1' }));
    await broker.publish('big-q', buildTaskMessage({ task: 't.small', id: 'small-1', args: [1], kwargs: {} }, JSON_SERIALIZER));
    const got: Delivery[] = [];
    const malformed: Array<{ id: string | undefined; reason: string }> = [];
    await broker.consume(['big-q'], { prefetch: 10, onMalformed: (m) => malformed.push(m) }, (d) => got.push(d));
    await waitFor(() => got.length === 1, 5000, 'the small message');
    await sleep(200);
    assert.equal(got.length, 1);
    assert.equal(got[0]!.message.headers.id, 'small-1');
    const dead = await raw.lrange('big-q.dlq', 0, -1);
    assert.equal(dead.length, 1);
    assert.ok(dead[0]!.length < 4096, `record of ${dead[0]!.length} bytes`);
    const rec = JSON.parse(dead[0]!) as { id: string; reason: string; size: number; truncated: boolean };
    assert.equal(rec.id, 'big-1');
    assert.equal(rec.truncated, true);
    assert.match(rec.reason, /exceeds the \d+-byte limit/);
    assert.ok(rec.size > 2 * 1024 * 1024);
    // Reported like any malformed message (the worker logs it and counts a security event).
    assert.equal(malformed.length, 1);
    assert.equal(malformed[0]!.id, 'big-1');
    assert.match(malformed[0]!.reason, /exceeds the \d+-byte limit/);
    // Nothing of it in unacked.
    assert.equal(await raw.hlen('unacked'), 1);
    const listed = await broker.deadLetters('big-q');
    assert.match(listed[0]!.reason, /exceeds/);
  });
});
