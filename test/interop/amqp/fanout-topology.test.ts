/**
 * The AMQP fanout declares what Celery 5.2.6 declares
 * (test/fixtures/celery-5.2.6/amqp/broker_topology.json, reference §4.1):
 * `celeryev` durable topic, `celery.pidbox` non-durable fanout,
 * `reply.celery.pidbox` non-durable direct; event receiver, worker control
 * and reply queues non-durable, auto-delete, with Celery's `x-message-ttl`
 * and `x-expires` as signed 32-bit integers. A subscription survives the
 * broker closing its connection.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { controlExchange, controlQueueName, eventExchange, replyExchange, type BroadcastDelivery, type Broker } from '../../../src/core/broker.ts';
import { resolveSettings } from '../../../src/config/options.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { createAmqpBroker } from '../../../src/transport/amqp/broker.ts';
import type { WireMessage } from '../../../src/protocol/types.ts';
import { readVector } from '../../helpers/fixtures.ts';
import { requireService, sleep, waitFor } from '../../helpers/services.ts';
import { closeConnection, connectionsOf, createTestVhost, hasRabbitmq, listBindings, listExchanges, listQueues, type TestVhost } from '../../integration/amqp/support/rabbit.ts';

function event(n: number): WireMessage {
  return { headers: { hostname: 'topology@test' }, properties: { delivery_mode: 1, priority: 0 }, contentType: 'application/json', contentEncoding: 'utf-8', body: Buffer.from(JSON.stringify({ type: 'worker-heartbeat', n })) };
}

describe('amqp fanout topology (Celery 5.2.6)', () => {
  const ready = hasRabbitmq();
  let vh: TestVhost | undefined;
  const open: Broker[] = [];
  const make = (): Broker => {
    const b = createAmqpBroker({ url: vh!.url(), logger: createLogger({ level: 'silent' }), settings: resolveSettings({}) });
    open.push(b);
    return b;
  };
  before(async () => {
    if (ready) vh = await createTestVhost('fanout-topology');
  });
  after(async () => {
    await Promise.allSettled(open.map((b) => b.close()));
    await vh?.delete();
  });

  it('declares Celery\'s exchanges and queues', async (t) => {
    if (!requireService(t, ready, 'RabbitMQ')) return;
    const b = make();
    const node = controlQueueName('topology@test');
    const ev = await b.subscribe(eventExchange(), {}, () => undefined);
    const ctl = await b.subscribe(controlExchange(), { queue: node }, () => undefined);
    const rq = await b.openReplyQueue(replyExchange(), 'oid-7');
    assert.match(ev.queue, /^celeryev\.[0-9a-f-]{36}$/);
    const captured = JSON.parse(readVector<{ with_worker_running: { exchanges: string; queues: string } }>('amqp/broker_topology.json').with_worker_running.exchanges) as Array<{ name: string; type: string; durable: boolean; auto_delete: boolean }>;
    const exchanges = await listExchanges(vh!.vhost);
    for (const name of ['celeryev', 'celery.pidbox']) {
      const want = captured.find((e) => e.name === name)!;
      const have = exchanges.find((e) => e.name === name)!;
      assert.deepEqual({ type: have.type, durable: have.durable, auto_delete: have.auto_delete }, { type: want.type, durable: want.durable, auto_delete: want.auto_delete }, name);
    }
    const reply = exchanges.find((e) => e.name === 'reply.celery.pidbox')!;
    assert.deepEqual({ type: reply.type, durable: reply.durable }, { type: 'direct', durable: false });
    const queues = await listQueues(vh!.vhost);
    const q = (name: string): (typeof queues)[number] => queues.find((x) => x.name === name)!;
    // The captured worker control queue, argument for argument, type for type.
    const pyPidbox = (JSON.parse(readVector<{ with_worker_running: { queues: string } }>('amqp/broker_topology.json').with_worker_running.queues) as Array<{ name: string; durable: boolean; auto_delete: boolean; arguments: Array<[string, string, number]> }>).find((x) => x.name.endsWith('.celery.pidbox'))!;
    assert.deepEqual(
      { durable: q(node).durable, auto_delete: q(node).auto_delete, exclusive: q(node).exclusive, args: q(node).arguments, types: q(node).argumentTypes },
      { durable: pyPidbox.durable, auto_delete: pyPidbox.auto_delete, exclusive: false, args: Object.fromEntries(pyPidbox.arguments.map(([k, , v]) => [k, v])), types: Object.fromEntries(pyPidbox.arguments.map(([k, ty]) => [k, ty])) },
    );
    assert.deepEqual({ d: q(ev.queue).durable, a: q(ev.queue).auto_delete, args: q(ev.queue).arguments }, { d: false, a: true, args: { 'x-message-ttl': 5000, 'x-expires': 60000 } });
    assert.deepEqual({ d: q(rq.queue).durable, a: q(rq.queue).auto_delete, args: q(rq.queue).arguments }, { d: false, a: true, args: { 'x-message-ttl': 300000, 'x-expires': 10000 } });
    assert.equal(rq.queue, 'oid-7.reply.celery.pidbox');
    const bindings = await listBindings(vh!.vhost);
    const bound = (src: string, dst: string): string[] => bindings.filter((x) => x.source_name === src && x.destination_name === dst).map((x) => x.routing_key);
    assert.deepEqual(bound('celeryev', ev.queue), ['#']);
    assert.deepEqual(bound('celery.pidbox', node), ['']);
    assert.deepEqual(bound('reply.celery.pidbox', rq.queue), ['oid-7']);
    await ev.close();
    await ctl.close();
    await rq.close();
  });

  it('a subscription survives the broker closing its connection', async (t) => {
    if (!requireService(t, ready, 'RabbitMQ')) return;
    const b = make();
    const got: BroadcastDelivery[] = [];
    const sub = await b.subscribe(eventExchange(), { bindingKeys: ['worker.*'] }, (d) => got.push(d));
    await b.broadcast(eventExchange(), 'worker.online', event(1));
    await waitFor(() => got.length === 1, 5000, 'first event');
    const conns = await connectionsOf(vh!.user);
    assert.ok(conns.length >= 2);
    for (const c of conns) await closeConnection(c.pid, 'fanout topology test');
    for (let i = 0; i < 100 && got.length < 2; i++) {
      await b.broadcast(eventExchange(), 'worker.heartbeat', event(2)).catch(() => undefined);
      await sleep(100);
    }
    assert.ok(got.length >= 2, 'delivered again after the reconnect');
    await sub.close();
  });
});
