/**
 * Redis safe mode (`waitForReplicas`, issue 22) on plain `redis://` too:
 * with no replica a send and a result store fail with `ERR_NOT_REPLICATED`
 * (the caller is not told they are safe); once a replica is attached they
 * succeed, and the replica holds them. And the loss it prevents: a replica
 * whose link lags is promoted after the primary dies — without WAIT the
 * sends of the lag were acknowledged and are gone; with WAIT they failed.
 */
import assert from 'node:assert/strict';
import { createServer, connect as tcpConnect, type Socket } from 'node:net';
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

/** A TCP relay in the replication link that can hold back what the primary sends (a lagging replica) and drop it. */
async function replicationRelay(primaryPort: number): Promise<{ port: number; freeze: () => void; drop: () => void; close: () => void }> {
  let frozen = false;
  const links = new Set<{ down: Socket; up: Socket }>();
  const server = createServer((down) => {
    const up = tcpConnect(primaryPort, '127.0.0.1');
    links.add({ down, up });
    down.pipe(up);
    up.on('data', (chunk: Buffer) => {
      if (!frozen) down.write(chunk);
    });
    const end = (): void => {
      down.destroy();
      up.destroy();
    };
    down.on('error', end).on('close', end);
    up.on('error', end).on('close', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as { port: number }).port,
    freeze: () => {
      frozen = true;
    },
    drop: () => {
      for (const l of links) {
        l.up.destroy();
        l.down.destroy();
      }
    },
    close: () => server.close(),
  };
}

/**
 * A replica that lags (its link held back), then the primary dies and the
 * replica is promoted: sends the client was told are stored are counted on
 * the promoted replica.
 */
async function lostOnPromotion(wait: boolean, servers: RedisServer[]): Promise<{ acked: number; failed: number; lost: number }> {
  const primary = await startRedisServer({ args: ['--repl-diskless-sync', 'yes', '--repl-diskless-sync-delay', '0'] });
  servers.push(primary);
  const relay = await replicationRelay(primary.port);
  const replica = await startRedisServer({ args: ['--replicaof', '127.0.0.1', String(relay.port)] });
  servers.push(replica);
  await waitFor(async () => /state=online/.test(await primary.client(0).info('replication')), 20_000, 'the replica online');
  const opts = { waitForReplicas: wait ? 1 : 0, waitForReplicasTimeout: 0.3 };
  const broker = createRedisBroker({ url: primary.url(0), settings: resolveSettings({ brokerTransportOptions: opts }), logger: createLogger({ level: 'silent' }) });
  const acked: string[] = [];
  let failed = 0;
  const send = async (id: string): Promise<void> => {
    await broker.publish('lag-q', buildTaskMessage({ task: 't.n', id, args: [], kwargs: {} }, JSON_SERIALIZER)).then(() => void acked.push(id), () => void failed++);
  };
  try {
    for (let i = 0; i < 50; i++) await send(`before-${i}`);
    // The lag starts once the replica has the first 50 (without WAIT the last of them may still be on the relay).
    await waitFor(async () => (await replica.client(0).llen('lag-q')) === 50, 10_000, 'the replica to hold the first 50');
    relay.freeze();
    await Promise.all(Array.from({ length: 100 }, (_, i) => send(`lagging-${i}`)));
  } finally {
    await broker.close();
  }
  await primary.stop();
  relay.drop();
  relay.close();
  const r = replica.client(0);
  await r.call('REPLICAOF', 'NO', 'ONE');
  const present = new Set((await r.lrange('lag-q', 0, -1)).map((e) => (JSON.parse(e) as { headers: { id: string } }).headers.id));
  return { acked: acked.length, failed, lost: acked.filter((id) => !present.has(id)).length };
}

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
      // As the error says: send again. Under load a replica online may still take longer than 200 ms to acknowledge.
      const again = async (fn: () => Promise<void>): Promise<void> => {
        for (let i = 0; ; i++) {
          try {
            return await fn();
          } catch (e) {
            if ((e as { code?: string }).code !== 'ERR_NOT_REPLICATED' || i >= 20) throw e;
            await new Promise((r) => setTimeout(r, 250));
          }
        }
      };
      await again(() => broker.publish('wr-q', msg('c')));
      await again(() => backend.store(record('c')));
      const r = new Redis({ host: '127.0.0.1', port: replica.port, lazyConnect: false });
      const ids = (await r.lrange('wr-q', 0, -1)).map((e) => (JSON.parse(e) as { headers: { id: string } }).headers.id);
      r.disconnect();
      assert.ok(ids.includes('c'), `the replica holds the acknowledged send (${ids.join(',')})`);
    } finally {
      await broker.close();
      await backend.close();
    }
  });

  it('a lagging replica promoted after the primary dies: acknowledged sends lost without WAIT, none with it', async (t) => {
    if (!requireService(t, hasRedisServer(), 'redis-server')) return;
    const without = await lostOnPromotion(false, servers);
    const withWait = await lostOnPromotion(true, servers);
    t.diagnostic(`without WAIT: ${JSON.stringify(without)}; with WAIT 1: ${JSON.stringify(withWait)}`);
    // Without WAIT the client is told the 100 sends of the lag are stored, and the promoted replica never had them.
    assert.equal(without.acked, 150);
    assert.equal(without.lost, 100);
    // With WAIT those sends fail (ERR_NOT_REPLICATED): nothing acknowledged is missing.
    assert.equal(withWait.acked, 50);
    assert.equal(withWait.failed, 100);
    assert.equal(withWait.lost, 0);
  });
});
