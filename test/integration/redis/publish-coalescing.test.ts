/**
 * Sends coalesced into LPUSH commands of up to MAX_COALESCED values (src/transport/redis/push-coalescer.ts)
 * against a real redis-server: many sends in flight keep their order and
 * become few commands; a send not awaited before close still lands.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { MAX_COALESCED } from '../../../src/transport/redis/push-coalescer.ts';
import { createRedisBroker } from '../../../src/transport/redis/broker.ts';
import { JSON_SERIALIZER } from '../../../src/codec/serializers.ts';
import { resolveSettings } from '../../../src/config/options.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { decodeRedisEnvelope } from '../../../src/transport/redis/envelope.ts';
import { buildTaskMessage } from '../../../src/protocol/task-message.ts';
import { DEFAULT_DECODE_LIMITS } from '../../../src/codec/limits.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { requireService } from '../../helpers/services.ts';

const ok = hasRedisServer();
const logger = createLogger({ level: 'silent' });
const message = (i: number) => buildTaskMessage({ task: 't.n', id: `id-${i}`, args: [i], kwargs: {} }, JSON_SERIALIZER);

describe('redis broker: coalesced sends', () => {
  let server: RedisServer | undefined;
  before(async () => {
    if (ok) server = await startRedisServer();
  });
  after(async () => server?.stop());

  it('100 sends in flight reach the list in call order, in a handful of LPUSH commands', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    const broker = createRedisBroker({ url: server!.url(0), logger, settings: resolveSettings({}) });
    await broker.connect();
    const raw = server!.client(0);
    try {
      await raw.config('RESETSTAT');
      await Promise.all(Array.from({ length: 100 }, (_, i) => broker.publish('coalesced', message(i))));
      const stats = String(await raw.info('commandstats'));
      const calls = Number(/cmdstat_lpush:calls=(\d+)/.exec(stats)?.[1] ?? 0);
      assert.equal(calls, Math.ceil(100 / MAX_COALESCED), `LPUSH calls: ${calls}`);
      // Consumers pop from the right: the first send must be the first out, across the pieces too.
      const popped = await raw.rpop('coalesced', 100);
      const ids = popped!.map((e) => decodeRedisEnvelope(e, DEFAULT_DECODE_LIMITS).message.headers.id);
      assert.deepEqual(ids, Array.from({ length: 100 }, (_, i) => `id-${i}`));
    } finally {
      await broker.close();
      raw.disconnect();
    }
  });

  it('a send not awaited before close still lands', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    const broker = createRedisBroker({ url: server!.url(0), logger, settings: resolveSettings({}) });
    await broker.connect();
    const sent = broker.publish('fire-and-forget', message(1));
    await broker.close();
    await sent;
    const raw = server!.client(0);
    assert.equal(await raw.llen('fire-and-forget'), 1);
    raw.disconnect();
  });
});
