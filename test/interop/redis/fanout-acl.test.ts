/**
 * Fanout over TLS as the Redis ACL user `celeriac secrets generate
 * redis-acl` makes: kombu's PSUBSCRIBE patterns for events (`#`,
 * `worker.#`) and the pidbox channel, PUBLISH, the binding sets and reply
 * lists — everything allowed (the ACL LOG stays empty). A binding key
 * whose pattern the ACL does not grant is refused with an error, not
 * silently dropped.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import { controlExchange, controlQueueName, eventExchange, replyExchange, type BroadcastDelivery, type Broker } from '../../../src/core/broker.ts';
import { resolveSettings } from '../../../src/config/options.ts';
import type { WireMessage } from '../../../src/protocol/types.ts';
import { createRedisBroker } from '../../../src/transport/redis/broker.ts';
import type { TestPki } from '../../helpers/pki.ts';
import { hasRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { requireService, waitFor } from '../../helpers/services.ts';
import { awkwardPassword, memoryLogger, runCli, startTlsRedis, tempDir, testPki, tlsUrl } from '../../integration/security/support.ts';

function event(n: number): WireMessage {
  return { headers: { hostname: 'acl@test' }, properties: { delivery_mode: 1, priority: 0 }, contentType: 'application/json', contentEncoding: 'utf-8', body: Buffer.from(JSON.stringify({ n })) };
}

describe('redis fanout as the generated ACL user, over TLS', () => {
  const ok = hasRedisServer();
  const tmp = tempDir('fanout-acl');
  let pki: TestPki;
  let redis: RedisServer | undefined;
  let admin: Redis;
  let url = '';
  const open: Broker[] = [];

  before(async () => {
    if (!ok) return;
    pki = await testPki(tmp.dir);
    redis = await startTlsRedis(pki, { password: awkwardPassword() });
    admin = redis.client();
    const out = join(tmp.dir, 'acl');
    const gen = await runCli(['secrets', 'generate', 'redis-acl', '--format', 'file', '--out', out], {});
    assert.equal(gen.code, 0, gen.stderr);
    const user = readFileSync(join(out, 'redis-username'), 'utf8').trim();
    const password = readFileSync(join(out, 'redis-password'), 'utf8').trim();
    const setuser = readFileSync(join(out, 'redis-acl-setuser.txt'), 'utf8').trim();
    assert.equal(await admin.call(...(setuser.split(' ') as [string, ...string[]])), 'OK');
    await admin.acl('LOG', 'RESET');
    url = tlsUrl(redis, { user, password }, 0, `ssl_cert_reqs=required&ssl_ca_certs=${encodeURIComponent(pki.ca)}`);
  });
  after(async () => {
    await Promise.allSettled(open.map((b) => b.close()));
    await redis?.stop();
    tmp.cleanup();
  });

  const make = (): Broker => {
    const b = createRedisBroker({ url, logger: memoryLogger('warn').logger, settings: resolveSettings({}) });
    open.push(b);
    return b;
  };

  it('events, pidbox and replies work and nothing is denied', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    const a = make();
    const b = make();
    const all: BroadcastDelivery[] = [];
    const gossip: BroadcastDelivery[] = [];
    const control: BroadcastDelivery[] = [];
    const s1 = await a.subscribe(eventExchange(), {}, (d) => all.push(d));
    const s2 = await a.subscribe(eventExchange(), { bindingKeys: ['worker.#'] }, (d) => gossip.push(d));
    const s3 = await a.subscribe(controlExchange(), { queue: controlQueueName('acl@test') }, (d) => control.push(d));
    await b.broadcast(eventExchange(), 'worker.heartbeat', event(1));
    await b.broadcast(eventExchange(), 'task.multi', event(2));
    await b.broadcast(controlExchange(), '', event(3));
    await waitFor(() => all.length === 2 && gossip.length === 1 && control.length === 1, 5000, 'deliveries');
    const rq = await b.openReplyQueue(replyExchange(), 'oid-acl');
    await a.sendReply(replyExchange(), 'oid-acl', event(4));
    assert.equal((await rq.receive(3000))?.routingKey, 'oid-acl');
    await rq.close();
    for (const s of [s1, s2, s3]) await s.close();
    assert.deepEqual(await admin.acl('LOG'), [], 'nothing denied');
  });

  it('a binding key whose pattern the ACL does not grant fails subscribe() with the server\'s refusal', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    await assert.rejects(make().subscribe(eventExchange(), { bindingKeys: ['task.*'] }, () => undefined), /NOPERM|permission/i);
    await admin.acl('LOG', 'RESET');
  });
});
