/**
 * The Redis fanout in kombu's layout, checked on a private Redis: channel
 * names (with `global_keyprefix`), binding-set members while a subscription
 * or reply queue lives, reply lists removed on close, and subscriptions
 * that survive the server dropping the subscriber connection.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { controlExchange, controlQueueName, eventExchange, replyExchange, type BroadcastDelivery, type Broker } from '../../../src/core/broker.ts';
import { resolveSettings } from '../../../src/config/options.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { createRedisBroker } from '../../../src/transport/redis/broker.ts';
import type { WireMessage } from '../../../src/protocol/types.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { requireService, sleep, waitFor } from '../../helpers/services.ts';

const SEP = '\x06\x16';

function event(n: number): WireMessage {
  return { headers: { hostname: 'layout@test' }, properties: { delivery_mode: 1, priority: 0 }, contentType: 'application/json', contentEncoding: 'utf-8', body: Buffer.from(JSON.stringify({ type: 'worker-heartbeat', n })) };
}

describe('redis fanout layout (kombu)', () => {
  const ready = hasRedisServer();
  let redis: RedisServer | undefined;
  const open: Broker[] = [];
  const make = (db: number, prefix?: string): Broker => {
    const settings = resolveSettings(prefix ? { brokerTransportOptions: { globalKeyprefix: prefix } } : {});
    const b = createRedisBroker({ url: redis!.url(db), logger: createLogger({ level: 'silent' }), settings });
    open.push(b);
    return b;
  };
  before(async () => {
    if (ready) redis = await startRedisServer();
  });
  after(async () => {
    await Promise.allSettled(open.map((b) => b.close()));
    await redis?.stop();
  });

  it('publishes kombu envelopes on /{db}.{exchange}/{routing key}, with global_keyprefix, and records bindings while subscribed', async (t) => {
    if (!requireService(t, ready, 'redis-server')) return;
    const spy = redis!.client(0).duplicate();
    const seen: Array<[string, string]> = [];
    spy.on('pmessage', (_p: string, channel: string, payload: string) => seen.push([channel, payload]));
    await spy.psubscribe('*');
    const b = make(3, 'p:');
    const sub = await b.subscribe(eventExchange(), { bindingKeys: ['worker.#'], queue: 'celeryev.layout-1' }, () => undefined);
    const node = controlQueueName('layout@test');
    const ctl = await b.subscribe(controlExchange(), { queue: node }, () => undefined);
    const db3 = redis!.client(3);
    assert.deepEqual(await db3.smembers('p:_kombu.binding.celeryev'), [`worker.#${SEP}${SEP}celeryev.layout-1`]);
    assert.deepEqual(await db3.smembers('p:_kombu.binding.celery.pidbox'), [`${SEP}${SEP}${node}`]);
    await b.broadcast(eventExchange(), 'worker.heartbeat', event(1));
    await b.broadcast(controlExchange(), '', event(2));
    await waitFor(() => seen.length === 2, 5000, 'two PUBLISHes');
    assert.deepEqual(seen.map(([c]) => c), ['p:/3.celeryev/worker.heartbeat', 'p:/3.celery.pidbox']);
    const env = JSON.parse(seen[0]![1]) as { body: string; 'content-type': string; headers: unknown; properties: Record<string, unknown> };
    assert.equal(Buffer.from(env.body, 'base64').toString(), JSON.stringify({ type: 'worker-heartbeat', n: 1 }));
    assert.equal(env['content-type'], 'application/json');
    assert.deepEqual(env.headers, { hostname: 'layout@test' });
    assert.deepEqual(env.properties.delivery_info, { exchange: 'celeryev', routing_key: 'worker.heartbeat' });
    assert.equal(env.properties.body_encoding, 'base64');
    assert.equal(env.properties.delivery_mode, 1);
    await sub.close();
    await ctl.close();
    assert.deepEqual(await db3.smembers('p:_kombu.binding.celeryev'), []);
    assert.deepEqual(await db3.smembers('p:_kombu.binding.celery.pidbox'), []);
    await spy.quit();
  });

  it('reply queues: a binding member while open, replies LPUSHed onto <oid>.reply.celery.pidbox, all removed on close', async (t) => {
    if (!requireService(t, ready, 'redis-server')) return;
    const client = make(4);
    const worker = make(4);
    const rq = await client.openReplyQueue(replyExchange(), 'oid-1');
    const db4 = redis!.client(4);
    assert.deepEqual(await db4.smembers('_kombu.binding.reply.celery.pidbox'), [`oid-1${SEP}${SEP}oid-1.reply.celery.pidbox`]);
    await worker.sendReply(replyExchange(), 'oid-1', event(1));
    await worker.sendReply(replyExchange(), 'oid-2', event(2)); // nobody bound: dropped
    assert.equal(await db4.llen('oid-1.reply.celery.pidbox'), 1);
    assert.equal(await db4.exists('oid-2.reply.celery.pidbox'), 0);
    const d = await rq.receive(2000);
    assert.equal(d?.routingKey, 'oid-1');
    await worker.sendReply(replyExchange(), 'oid-1', event(3));
    await rq.close();
    assert.equal(await db4.exists('oid-1.reply.celery.pidbox'), 0);
    assert.deepEqual(await db4.smembers('_kombu.binding.reply.celery.pidbox'), []);
  });

  it('a subscription survives the server dropping its connection', async (t) => {
    if (!requireService(t, ready, 'redis-server')) return;
    const b = make(5);
    const got: BroadcastDelivery[] = [];
    const sub = await b.subscribe(eventExchange(), {}, (d) => got.push(d));
    await b.broadcast(eventExchange(), 'worker.online', event(1));
    await waitFor(() => got.length === 1, 5000, 'first event');
    const admin = redis!.client(0);
    const list = await admin.client('LIST');
    const killed = String(list).split('\n').filter((l) => l.includes('name=celeriac:fanout') && / db=5 /.test(l));
    assert.equal(killed.length, 1, 'one subscriber connection');
    await admin.client('KILL', 'ID', /id=(\d+)/.exec(killed[0]!)![1]!);
    // Broadcast until the re-subscribed connection hears one (those sent while it was down are lost: pub/sub).
    for (let i = 0; i < 100 && got.length < 2; i++) {
      await b.broadcast(eventExchange(), 'worker.heartbeat', event(2));
      await sleep(50);
    }
    assert.ok(got.length >= 2, 'delivered again after the reconnect');
    await sub.close();
  });
});
