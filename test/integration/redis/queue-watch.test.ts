/**
 * The idle consumer's wake-up (src/transport/redis/queue-watch.ts) against a
 * real redis-server: once armed it reports the next push to a watched list,
 * and nothing else — not the consumer's own pops, not writes to other keys
 * under the same prefix (result records), not a second push before re-arming.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { QueueWatch } from '../../../src/transport/redis/queue-watch.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { requireService, sleep } from '../../helpers/services.ts';

const ok = hasRedisServer();

describe('QueueWatch (client-side tracking wake-ups)', () => {
  let redis: RedisServer | undefined;
  let other: Redis | undefined;
  let watch: QueueWatch | undefined;
  let changes = 0;

  before(async () => {
    if (!ok) return;
    redis = await startRedisServer();
    other = redis.client();
    watch = new QueueWatch({
      connect: (role) => new Redis({ host: '127.0.0.1', port: redis!.port, lazyConnect: true, protocol: 2, autoResubscribe: false, connectionName: `test:${role}` }),
      keys: ['jobs', 'jobs\x06\x163'],
      onChange: () => changes++,
      logger: createLogger({ level: 'silent' }),
    });
    await watch.start();
    const deadline = Date.now() + 5000;
    while (!watch.tracking && Date.now() < deadline) await sleep(10);
  });
  after(async () => {
    watch?.close();
    other?.disconnect();
    await redis?.stop();
  });

  const settle = (): Promise<void> => sleep(100);

  it('sets up tracking redirected to the notifier', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    assert.equal(watch!.tracking, true);
    const list = String(await other!.client('LIST'));
    assert.match(list, /flags=t\b.*redir=\d+/, 'a connection with tracking on and a redirect');
    const info = (await watch!.reserver.call('CLIENT', 'TRACKINGINFO')) as unknown[];
    const flags = (info[info.indexOf('flags') + 1] as string[]).map(String);
    assert.ok(flags.includes('optin') && flags.includes('noloop'), `opt-in mode without own-write invalidations (flags: ${flags.join(', ')})`);
    assert.doesNotMatch(list, /flags=\S*B/, 'not broadcast mode');
  });

  it('armed: the next push by another client is reported, with the count of what was already waiting', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    await other!.lpush('jobs', 'early');
    assert.equal(await watch!.arm(), 1, 'arm counts what already waits');
    await other!.del('jobs');
    await settle();
    changes = 0;
    assert.equal(await watch!.arm(), 0);
    await other!.lpush('jobs\x06\x163', 'm1');
    await settle();
    assert.equal(changes, 1, 'one wake-up for the push');
  });

  it('a list that was reported stays quiet until armed again: own pops and further pushes send nothing', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    changes = 0;
    await watch!.reserver.rpop('jobs\x06\x163');
    await other!.lpush('jobs\x06\x163', 'm2');
    await watch!.reserver.rpop('jobs\x06\x163');
    await settle();
    assert.equal(changes, 0);
  });

  it('scripts on the reserver (the reserve) arm nothing: later writes to their keys send no invalidation at all', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    await other!.lpush('jobs', 'r1');
    await settle();
    changes = 0;
    let invalidations = 0;
    const count = (): void => void invalidations++;
    watch!.notifier.on('messageBuffer', count);
    try {
      // The shape of a reserve: read the lists, pop, record the delivery.
      await watch!.reserver.eval("redis.call('LLEN', KEYS[1]); redis.call('RPOP', KEYS[1]); redis.call('HSET', KEYS[2], 't', '1'); return 1", 2, 'jobs', 'jobs-unacked');
      await other!.lpush('jobs', 'r2');
      await other!.hdel('jobs-unacked', 't');
      await settle();
      assert.equal(changes, 0, 'no wake-up: only arm() arms');
      assert.equal(invalidations, 0, 'no invalidation messages for keys a script touched');
    } finally {
      watch!.notifier.off('messageBuffer', count);
      await other!.del('jobs', 'jobs-unacked');
    }
  });

  it('ignores writes to other keys under the same prefix (result records)', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    assert.equal(await watch!.arm(), 0);
    await settle();
    changes = 0;
    await other!.set('jobs-task-meta-1', '{}');
    await other!.set('jobsx', '1');
    await settle();
    assert.equal(changes, 0);
    await other!.lpush('jobs', 'm3');
    await settle();
    assert.equal(changes, 1);
  });

  it('an ACL without client|caching: default-mode tracking with NOLOOP, and wake-ups still work', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    const password = 'test-only-queue-watch-acl-password-0123456789';
    await other!.call('ACL', 'SETUSER', 'nocaching', 'on', `>${password}`, '~*', '&*', '+@all', '-client|caching');
    let wakes = 0;
    const limited = new QueueWatch({
      connect: (role) => new Redis({ host: '127.0.0.1', port: redis!.port, username: 'nocaching', password, lazyConnect: true, protocol: 2, autoResubscribe: false, connectionName: `test:acl-${role}` }),
      keys: ['acl-jobs'],
      onChange: () => wakes++,
      logger: createLogger({ level: 'silent' }),
    });
    try {
      await limited.start();
      const deadline = Date.now() + 5000;
      while (!limited.tracking && Date.now() < deadline) await sleep(10);
      assert.equal(limited.tracking, true, 'tracking on, not polling');
      const info = (await limited.reserver.call('CLIENT', 'TRACKINGINFO')) as unknown[];
      const flags = (info[info.indexOf('flags') + 1] as string[]).map(String);
      assert.ok(flags.includes('noloop') && !flags.includes('optin'), `default mode with NOLOOP (flags: ${flags.join(', ')})`);
      assert.equal(await limited.arm(), 0);
      await settle();
      wakes = 0;
      await other!.lpush('acl-jobs', 'a1');
      await settle();
      assert.equal(wakes, 1, 'one wake-up for the push');
    } finally {
      limited.close();
      await other!.del('acl-jobs');
      await other!.call('ACL', 'DELUSER', 'nocaching');
    }
  });

  it('re-establishes tracking after its connections are killed, and asks the consumer to look', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    changes = 0;
    await other!.call('CLIENT', 'KILL', 'SKIPME', 'yes');
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && !(watch!.tracking && changes > 0)) await sleep(20);
    assert.equal(watch!.tracking, true, 'tracking back on');
    assert.ok(changes >= 1, 'the consumer was told to look at the lists');
    await other!.del('jobs');
    assert.equal(await watch!.arm(), 0);
    changes = 0;
    await other!.lpush('jobs', 'm4');
    await settle();
    assert.equal(changes, 1, 'wake-ups work after the reconnect');
  });
});
