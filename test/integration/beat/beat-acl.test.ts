/**
 * celeriac beat under the Redis ACL `celeriac secrets generate redis-acl`
 * writes for producers: its scripts and reads need nothing more.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pino from 'pino';
import { Redis } from 'ioredis';
import { resolveSettings } from '../../../src/config/options.ts';
import { generateSecret } from '../../../src/secrets/generate.ts';
import { createBeatStore } from '../../../src/transport/index.ts';
import { hasRedisServer, startRedisServer } from '../../helpers/redis-server.ts';
import { requireService } from '../../helpers/services.ts';

const logger = pino({ level: 'silent' });

describe('beat with the generated Redis ACL', () => {
  it('the producer user can hold the lease, claim, confirm, read and release', async (t) => {
    if (!requireService(t, hasRedisServer(), 'redis-server')) return;
    const redis = await startRedisServer();
    t.after(() => redis.stop());
    const secret = await generateSecret('redis-acl', { role: 'producer', queues: ['celery'] });
    const setuser = secret.items.find((i) => i.fileName === 'redis-acl-setuser.txt')!.value;
    const password = secret.items.find((i) => i.fileName === 'redis-password')!.value;
    const user = secret.items.find((i) => i.fileName === 'redis-username')!.value;
    const admin = new Redis(redis.url(0));
    await admin.call(...(setuser.split(' ') as [string, ...string[]]));
    admin.disconnect();
    const url = redis.url(0).replace('redis://', `redis://${user}:${password}@`);
    const store = (await createBeatStore({ url, side: 'broker', keyPrefix: '', namespace: 'acl', settings: resolveSettings({}), logger }))!;
    t.after(() => store.close());
    const lease = await store.acquire('a', 5000);
    assert.ok(lease.leader);
    assert.deepEqual(await store.claim({ token: lease.token, entry: 'e', tick: 1000, taskId: 'id', skipped: 0 }), { state: 'claimed', published: false });
    await store.confirm('e', 1000);
    const state = await store.read();
    assert.equal(state.lease?.holder, 'a');
    assert.deepEqual(state.entries.map((e) => [e.name, e.lastTick, e.confirmed]), [['e', 1000, true]]);
    await store.release('a', lease.token);
    assert.equal((await store.read()).lease, undefined);
  });
});
