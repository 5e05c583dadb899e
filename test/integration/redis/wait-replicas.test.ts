/**
 * Redis safe mode (`waitForReplicas`, issue 22) on plain `redis://` too:
 * with no replica a send and a result store fail with `ERR_NOT_REPLICATED`
 * (the caller is not told they are safe); once a replica is attached they
 * succeed, and the replica holds them.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { createRedisBroker } from '../../../src/transport/redis/broker.ts';
import { createRedisBackend } from '../../../src/transport/redis/backend.ts';
import { JSON_SERIALIZER } from '../../../src/codec/serializers.ts';
import { resolveSettings } from '../../../src/config/options.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { buildTaskMessage } from '../../../src/protocol/task-message.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { requireService, waitFor } from '../../helpers/services.ts';

describe('redis waitForReplicas', () => {
  const servers: RedisServer[] = [];
  after(async () => {
    for (const s of servers) await s.stop();
  });

  it('fails sends and stores that no replica acknowledged, and passes them once one is attached', async (t) => {
    if (!requireService(t, hasRedisServer(), 'redis-server')) return;
    const primary = await startRedisServer();
    servers.push(primary);
    const logger = createLogger({ level: 'silent' });
    const opts = { waitForReplicas: 1, waitForReplicasTimeout: 0.2 };
    const settings = resolveSettings({ brokerTransportOptions: opts, resultBackendTransportOptions: opts });
    const broker = createRedisBroker({ url: primary.url(0), settings, logger });
    const backend = createRedisBackend({ url: primary.url(1), settings, logger });
    const msg = (id: string) => buildTaskMessage({ task: 't.n', id, args: [], kwargs: {} }, JSON_SERIALIZER);
    const record = (id: string) => [{ taskId: id, state: 'SUCCESS', payload: Buffer.from('{"status":"SUCCESS"}') }];
    try {
      await broker.connect();
      await assert.rejects(broker.publish('wr-q', msg('a')), (e: unknown) => (e as { code?: string }).code === 'ERR_NOT_REPLICATED' && /0 of 1 replica/.test((e as Error).message));
      await assert.rejects(broker.publishMany([{ queue: 'wr-q', message: msg('b'), options: { maxLength: 100 } }]), (e: unknown) => (e as { code?: string }).code === 'ERR_NOT_REPLICATED');
      await assert.rejects(backend.store(record('a')), (e: unknown) => (e as { code?: string }).code === 'ERR_NOT_REPLICATED');

      const replica = await startRedisServer({ args: ['--replicaof', '127.0.0.1', String(primary.port), '--repl-diskless-sync', 'yes'] });
      servers.push(replica);
      await primary.client(0).config('SET', 'repl-diskless-sync-delay', '0');
      await waitFor(async () => /state=online/.test(await primary.client(0).info('replication')), 20_000, 'the replica online');
      await broker.publish('wr-q', msg('c'));
      await backend.store(record('c'));
      const r = new Redis({ host: '127.0.0.1', port: replica.port, lazyConnect: false });
      const ids = (await r.lrange('wr-q', 0, -1)).map((e) => (JSON.parse(e) as { headers: { id: string } }).headers.id);
      r.disconnect();
      assert.ok(ids.includes('c'), `the replica holds the acknowledged send (${ids.join(',')})`);
    } finally {
      await broker.close();
      await backend.close();
    }
  });
});
