/**
 * AMQP-specific behaviour on the shared RabbitMQ, each file in its own
 * vhost with its own user: Celery's topology, SIGKILL redelivery (immediate,
 * no visibility timeout), forced connection closes (stale deliveries are
 * never acked on a new channel), unroutable returns, bulk confirms, quorum
 * queues, broadcasts, least-privilege users, refused logins and the
 * security policy.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createApp } from '../../../src/client/app.ts';
import { AmqpBroker, createAmqpBroker } from '../../../src/transport/amqp/broker.ts';
import type { BroadcastDelivery as BroadcastMessage, Exchange } from '../../../src/core/broker.ts';
import type { Delivery } from '../../../src/core/broker.ts';
import { JSON_SERIALIZER } from '../../../src/codec/serializers.ts';
import { resolveSettings, type AppSettings } from '../../../src/config/options.ts';
import { InsecureConfigError } from '../../../src/config/policy.ts';
import { ConnectionError } from '../../../src/errors.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { newId } from '../../../src/protocol/ids.ts';
import { buildTaskMessage } from '../../../src/protocol/task-message.ts';
import type { WireMessage } from '../../../src/protocol/types.ts';
import { resetSecurityEvents, securityCounters } from '../../../src/observability/security-events.ts';
import { consumeAndDie } from '../../helpers/crash.ts';
// After Celeriac, so that amqplib loads with Celeriac's header-depth guard.
import { connect } from 'amqplib';
import { requireService, sleep, waitFor } from '../../helpers/services.ts';
import { closeConnection, connectionsOf, createTestVhost, ctl, hasRabbitmq, listBindings, listExchanges, listQueues, type TestVhost } from './support/rabbit.ts';

const ready = hasRabbitmq();
const logger = createLogger({ level: 'silent' });

function message(i: number, priority = 0): WireMessage {
  return buildTaskMessage({ task: 'tasks.add', id: newId(), args: [i, i], kwargs: {}, priority }, JSON_SERIALIZER);
}
const argOf = (d: Delivery): number => (JSON.parse(d.message.body.toString()) as [number[]])[0]![0]!;
const q = (): string => `bq-${newId().slice(0, 8)}`;

describe('amqp broker behaviour', () => {
  let vh: TestVhost;
  const open: AmqpBroker[] = [];
  const make = (settings: AppSettings = {}, url?: string): AmqpBroker => {
    const b = createAmqpBroker({ url: url ?? vh.url(), logger, settings: resolveSettings({ brokerTransportOptions: { reconnectDelayMs: 50, reconnectDelayMaxMs: 500 }, ...settings }) });
    open.push(b);
    return b;
  };

  before(async () => {
    if (ready) vh = await createTestVhost('behaviour');
  });
  after(async () => {
    await Promise.allSettled(open.map((b) => b.close()));
    if (ready) await vh.delete();
  });

  it("declares Celery's topology exactly: direct exchange, durable queue without arguments, binding", async (t) => {
    if (!requireService(t, ready, 'RabbitMQ')) return;
    const b = make();
    const queue = q();
    await b.publish(queue, message(1));
    const queues = await listQueues(vh.vhost);
    const mine = queues.find((x) => x.name === queue)!;
    // As broker_topology.json shows for Python's `celery` queue.
    assert.deepEqual({ durable: mine.durable, auto_delete: mine.auto_delete, exclusive: mine.exclusive, arguments: mine.arguments }, { durable: true, auto_delete: false, exclusive: false, arguments: {} });
    const ex = (await listExchanges(vh.vhost)).find((e) => e.name === queue)!;
    assert.deepEqual(ex, { name: queue, type: 'direct', durable: true, auto_delete: false });
    const bindings = (await listBindings(vh.vhost)).filter((x) => x.destination_name === queue).map((x) => `${x.source_name}→${x.destination_name}:${x.routing_key}`).sort();
    assert.deepEqual(bindings, [`→${queue}:${queue}`, `${queue}→${queue}:${queue}`].sort());
    assert.equal(mine.messages, 1);
    await b.purge(queue);
  });

  it('a worker killed by SIGKILL: RabbitMQ requeues its deliveries at once, flagged redelivered', async (t) => {
    if (!requireService(t, ready, 'RabbitMQ')) return;
    const survivor = make();
    const queue = q();
    await survivor.publishMany([1, 2, 3].map((i) => ({ queue, message: message(i) })));
    const t0 = Date.now();
    await consumeAndDie(vh.url(), queue, 3, 1);
    // No visibility timeout on AMQP: the messages are back as soon as the connection drops.
    await waitFor(async () => (await survivor.queueLength(queue)) === 3, 5000, 'requeue after the crash');
    const got: Delivery[] = [];
    const c = await survivor.consume([queue], { prefetch: 10 }, (d) => got.push(d));
    await waitFor(() => got.length === 3, 5000, 'redelivery');
    t.diagnostic(`redelivered ${Date.now() - t0} ms after the crash started`);
    assert.deepEqual(got.map(argOf).sort(), [1, 2, 3]);
    assert.ok(got.every((d) => d.redelivered));
    await Promise.all(got.map((d) => d.ack()));
    await c.cancel();
  });

  it('a consumer connection closed by force: held deliveries go stale (never acked on the new channel), the consumer resumes', async (t) => {
    if (!requireService(t, ready, 'RabbitMQ')) return;
    // A user of its own, so the connection we close is this broker's and no other test's.
    const user = await vh.addUser({ configure: '.*', write: '.*', read: '.*' });
    const b = make({}, user.url);
    const queue = q();
    await b.publishMany([1, 2, 3, 4, 5].map((i) => ({ queue, message: message(i) })));
    const got: Delivery[] = [];
    const errors: Error[] = [];
    let autoAck = false;
    const c = await b.consume([queue], { prefetch: 2, onError: (e) => errors.push(e) }, (d) => {
      got.push(d);
      if (autoAck) void d.ack();
    });
    await waitFor(() => got.length === 2, 5000, 'two deliveries');
    const conns = await connectionsOf(user.user);
    const consumerConn = conns.find((x) => x.name.includes('consumer'));
    assert.ok(consumerConn, `consumer connection listed: ${JSON.stringify(conns)}`);
    await closeConnection(consumerConn.pid, 'test: forced close');
    // The two held messages come again, redelivered, on the new channel.
    await waitFor(() => got.length === 4, 10_000, 'redelivery after reconnect');
    assert.equal((got[0] as unknown as { stale: boolean }).stale, true);
    assert.deepEqual(got.slice(2).map(argOf).sort(), got.slice(0, 2).map(argOf).sort());
    assert.ok(got.slice(2).every((d) => d.redelivered));
    // Settling the stale ones is a no-op; it must not ack the new deliveries nor break the channel.
    await got[0]!.ack();
    await got[1]!.reject(false);
    assert.equal(c.unsettled, 2);
    autoAck = true;
    for (const d of got.slice(2)) await d.ack();
    await waitFor(() => got.length === 7, 10_000, 'the rest');
    assert.deepEqual(got.slice(2).map(argOf).sort(), [1, 2, 3, 4, 5]);
    assert.ok(errors.some((e) => /connection lost/.test(e.message)), 'the loss was reported through onError');
    await sleep(200);
    assert.equal(await b.queueLength(queue), 0);
    await c.cancel();
  });

  it('publishing survives a forced close of the publisher connection', async (t) => {
    if (!requireService(t, ready, 'RabbitMQ')) return;
    const user = await vh.addUser({ configure: '.*', write: '.*', read: '.*' });
    const b = make({}, user.url);
    const queue = q();
    await b.publish(queue, message(1));
    const pub = (await connectionsOf(user.user)).find((x) => x.name.includes('publisher'))!;
    await closeConnection(pub.pid, 'test: forced close');
    await b.publishMany(Array.from({ length: 50 }, (_, i) => ({ queue, message: message(i) })));
    assert.equal(await b.queueLength(queue), 51);
    await b.purge(queue);
  });

  it('a message to a deleted queue comes back (mandatory), the queue is declared again and nothing is lost', async (t) => {
    if (!requireService(t, ready, 'RabbitMQ')) return;
    const b = make();
    const queue = q();
    await b.publish(queue, message(1));
    await ctl(['delete_queue', '-p', vh.vhost, queue]);
    await b.publish(queue, message(2));
    assert.equal(await b.queueLength(queue), 1);
    await b.purge(queue);
  });

  it('a message with absurdly nested headers is dead-lettered as malformed; the consumer keeps its connection and serves the next one', async (t) => {
    if (!requireService(t, ready, 'RabbitMQ')) return;
    const b = make();
    const queue = q();
    await b.publish(queue, message(0)); // declares the queue
    await b.purge(queue);
    let deep: unknown = 1;
    for (let i = 0; i < 100; i++) deep = [deep];
    const raw = await connect(vh.url());
    const ch = await raw.createConfirmChannel();
    ch.sendToQueue(queue, Buffer.from('[[1, 1], {}, {}]'), { headers: { id: 'deep-1', h: deep }, contentType: 'application/json', contentEncoding: 'utf-8' });
    await ch.waitForConfirms();
    await raw.close();
    await b.publish(queue, message(5));
    const malformed: string[] = [];
    const errors: Error[] = [];
    const got: Delivery[] = [];
    const c = await b.consume([queue], { prefetch: 10, onMalformed: (m) => malformed.push(`${m.id}: ${m.reason}`), onError: (e) => errors.push(e) }, (d) => got.push(d));
    await waitFor(() => got.length === 1 && malformed.length === 1, 5000, 'one malformed, one good');
    assert.match(malformed[0]!, /^deep-1: malformed message: header value nested deeper than 64 levels/);
    assert.equal(argOf(got[0]!), 5);
    await got[0]!.ack();
    assert.deepEqual(errors, [], 'no connection loss');
    assert.equal((await b.deadLetters(queue)).length, 1);
    await c.cancel();
  });

  it('streams confirms: 5,000 messages in one bulk send, all stored', async (t) => {
    if (!requireService(t, ready, 'RabbitMQ')) return;
    const b = make();
    const queue = q();
    const t0 = Date.now();
    await b.publishMany(Array.from({ length: 5000 }, (_, i) => ({ queue, message: message(i) })));
    t.diagnostic(`5000 confirmed in ${Date.now() - t0} ms`);
    assert.equal(await b.queueLength(queue), 5000);
    assert.equal(await b.purge(queue), 5000);
  });

  it('priorities with taskQueueMaxPriority: higher first; the queue carries x-max-priority', async (t) => {
    if (!requireService(t, ready, 'RabbitMQ')) return;
    const b = make({ taskQueueMaxPriority: 9 });
    const queue = q();
    await b.publishMany([0, 3, 9, 6].map((p) => ({ queue, message: message(p, p), options: { priority: p } })));
    const info = (await listQueues(vh.vhost)).find((x) => x.name === queue)!;
    assert.deepEqual(info.arguments, { 'x-max-priority': 9 });
    assert.deepEqual(info.argumentTypes, { 'x-max-priority': 'signedint' }, 'typed as Python declares it');
    const got: Delivery[] = [];
    const c = await b.consume([queue], { prefetch: 10 }, (d) => got.push(d));
    await waitFor(() => got.length === 4, 5000, 'deliveries');
    assert.deepEqual(got.map(argOf), [9, 6, 3, 0]);
    await Promise.all(got.map((d) => d.ack()));
    await c.cancel();
  });

  it('a queue declared with other arguments is used as it is (warning), not a crash loop', async (t) => {
    if (!requireService(t, ready, 'RabbitMQ')) return;
    const queue = q();
    await make({ taskQueueMaxPriority: 5 }).publish(queue, message(1));
    const plain = make();
    await plain.publish(queue, message(2));
    const got: Delivery[] = [];
    const c = await plain.consume([queue], { prefetch: 10 }, (d) => got.push(d));
    await waitFor(() => got.length === 2, 5000, 'both');
    await Promise.all(got.map((d) => d.ack()));
    await c.cancel();
  });

  it('quorum queues (taskDefaultQueueType): declared with x-queue-type, consumed, dead-lettered', async (t) => {
    if (!requireService(t, ready, 'RabbitMQ')) return;
    const b = make({ taskDefaultQueueType: 'quorum' });
    const queue = q();
    await b.publishMany([1, 2, 3].map((i) => ({ queue, message: message(i) })));
    const info = (await listQueues(vh.vhost)).find((x) => x.name === queue)!;
    assert.equal(info.type, 'quorum');
    assert.deepEqual(info.arguments, { 'x-queue-type': 'quorum' });
    const got: Delivery[] = [];
    const c = await b.consume([queue], { prefetch: 2 }, (d) => got.push(d));
    await waitFor(() => got.length === 2, 5000, 'prefetch window of 2');
    await sleep(100);
    assert.equal(got.length, 2);
    await got[0]!.ack();
    await got[1]!.deadLetter('quorum dead letter');
    await waitFor(() => got.length === 3, 5000, 'third');
    await got[2]!.reject(true);
    await waitFor(() => got.length === 4, 5000, 'requeued third');
    assert.equal(got[3]!.redelivered, true);
    await got[3]!.ack();
    const dead = await b.deadLetters(queue);
    assert.equal(dead.length, 1);
    assert.equal(dead[0]!.reason, 'quorum dead letter');
    assert.equal((await listQueues(vh.vhost)).find((x) => x.name === `${queue}.dlq`)?.type, 'quorum');
    await c.cancel();
  });

  it('dead letters: a durable <queue>.dlq with the reason; reading them does not remove them', async (t) => {
    if (!requireService(t, ready, 'RabbitMQ')) return;
    const b = make();
    const queue = q();
    const m = message(1);
    await b.publish(queue, m);
    const got: Delivery[] = [];
    const c = await b.consume([queue], { prefetch: 10 }, (d) => got.push(d));
    await waitFor(() => got.length === 1, 5000, 'delivery');
    await got[0]!.deadLetter('bad input');
    const dlq = (await listQueues(vh.vhost)).find((x) => x.name === `${queue}.dlq`)!;
    // Bounded by count and bytes, oldest dropped first (issue 20 #7).
    assert.deepEqual(
      { durable: dlq.durable, auto_delete: dlq.auto_delete, arguments: dlq.arguments },
      { durable: true, auto_delete: false, arguments: { 'x-max-length': 100_000, 'x-max-length-bytes': 256 * 1024 * 1024, 'x-overflow': 'drop-head' } },
    );
    for (let i = 0; i < 2; i++) {
      const dead = await b.deadLetters(queue);
      assert.equal(dead.length, 1);
      assert.equal(dead[0]!.reason, 'bad input');
      assert.equal(dead[0]!.queue, queue);
      assert.ok(dead[0]!.at > Date.now() - 60_000);
      assert.deepEqual(dead[0]!.message?.headers, m.headers, 'original headers, without the dead-letter bookkeeping');
      assert.equal(dead[0]!.raw, m.body.toString());
    }
    await c.cancel();
  });

  it('a dead letter larger than 64 KiB keeps its headers, the reason and the first KiB of its body (the DLQ stays bounded)', async (t) => {
    if (!requireService(t, ready, 'RabbitMQ')) return;
    const b = make();
    const queue = q();
    const big = buildTaskMessage({ task: 'tasks.big', id: newId(), args: ['x'.repeat(300 * 1024)], kwargs: {} }, JSON_SERIALIZER);
    await b.publish(queue, big);
    const got: Delivery[] = [];
    const c = await b.consume([queue], { prefetch: 1 }, (d) => got.push(d));
    await waitFor(() => got.length === 1, 10_000, 'delivery');
    await got[0]!.deadLetter('too big to keep');
    await c.cancel();
    const dead = await b.deadLetters(queue);
    assert.equal(dead.length, 1);
    assert.equal(dead[0]!.reason, 'too big to keep');
    assert.equal(dead[0]!.message?.headers.id, big.headers.id);
    assert.equal(dead[0]!.raw.length, 1024);
  });

  it('broadcast: fanout reaches every subscriber; topic subscriptions filter by binding key; Celery pidbox queue arguments', async (t) => {
    if (!requireService(t, ready, 'RabbitMQ')) return;
    const b = make();
    const c = make();
    const fan: Exchange = { name: `fan-${newId().slice(0, 6)}`, type: 'fanout', durable: false };
    const a1: BroadcastMessage[] = [];
    const a2: BroadcastMessage[] = [];
    const s1 = await b.subscribe(fan, {}, (m) => a1.push(m));
    const s2 = await c.subscribe(fan, { queue: `node1@h.${fan.name}` }, (m) => a2.push(m));
    const ev: WireMessage = { headers: { hostname: 'gen1@h' }, properties: { delivery_mode: 1, priority: 0 }, contentType: 'application/json', contentEncoding: 'utf-8', body: Buffer.from('{"type": "ping"}') };
    await c.broadcast(fan, '', ev);
    await waitFor(() => a1.length === 1 && a2.length === 1, 5000, 'both subscribers');
    assert.deepEqual(a1[0]!.message.headers, { hostname: 'gen1@h' });
    assert.equal(a2[0]!.message.body.toString(), '{"type": "ping"}');
    const pid = (await listQueues(vh.vhost)).find((x) => x.name === `node1@h.${fan.name}`)!;
    assert.deepEqual({ durable: pid.durable, auto_delete: pid.auto_delete, arguments: pid.arguments }, { durable: false, auto_delete: true, arguments: { 'x-expires': 10000, 'x-message-ttl': 300000 } });
    // broker_topology.json: Python's pidbox queue has the same arguments, both signedint.
    assert.deepEqual(pid.argumentTypes, { 'x-expires': 'signedint', 'x-message-ttl': 'signedint' });

    const topic: Exchange = { name: `ev-${newId().slice(0, 6)}`, type: 'topic', durable: true };
    const tasks: string[] = [];
    const all: string[] = [];
    const s3 = await b.subscribe(topic, { bindingKeys: ['task.#'] }, (m) => tasks.push(m.routingKey));
    const s4 = await b.subscribe(topic, {}, (m) => all.push(m.routingKey));
    for (const rk of ['task.sent', 'worker.heartbeat', 'task.multi']) await c.broadcast(topic, rk, ev);
    await waitFor(() => all.length === 3 && tasks.length === 2, 5000, 'topic routing');
    assert.deepEqual(tasks, ['task.sent', 'task.multi']);
    for (const s of [s1, s2, s3, s4]) await s.close();
  });

  it('a user that may only write to the default exchange can still send tasks (queue declared by another user), and cannot consume', async (t) => {
    if (!requireService(t, ready, 'RabbitMQ')) return;
    const queue = q();
    await make().publish(queue, message(0)); // the worker side declares the queue
    const sender = await vh.addUser({ configure: '^$', write: '^amq\\.default$', read: '^$' });
    const app = createApp({ brokerUrl: sender.url, backend: null, logger });
    try {
      const r = await app.sendTask('tasks.add', [1, 2], {}, { queue });
      assert.ok(r.id);
      await app.sendMany(Array.from({ length: 10 }, (_, i) => ({ name: 'tasks.add', args: [i, 1], options: { queue } })));
      const broker = await app.broker();
      await assert.rejects(broker.consume([queue], { prefetch: 1 }, () => undefined), (e: unknown) => /403|ACCESS.REFUSED/i.test(String((e as Error).message)));
    } finally {
      await app.close();
    }
    assert.equal(await make().queueLength(queue), 12);
    // Without write permission the send fails at once with a clear error, not after the publish timeout.
    const reader = await vh.addUser({ configure: '^$', write: '^$', read: '.*' });
    const t0 = Date.now();
    await assert.rejects(make({}, reader.url).publish(queue, message(1)), (e: unknown) => e instanceof ConnectionError && e.code === 'ERR_AUTH' && /may not publish/.test(e.message));
    assert.ok(Date.now() - t0 < 3000);
  });

  it('credential rotation: new credentials are checked, then used by the next connection; open ones are not dropped', async (t) => {
    if (!requireService(t, ready, 'RabbitMQ')) return;
    const first = await vh.addUser({ configure: '.*', write: '.*', read: '.*' });
    const second = await vh.addUser({ configure: '.*', write: '.*', read: '.*' });
    const b = make({}, first.url);
    const queue = q();
    await b.publish(queue, message(1));
    await assert.rejects(b.updateCredentials(vh.url({ user: second.user, password: 'Not-the-right-password-0123' })), (e: unknown) => e instanceof ConnectionError && e.code === 'ERR_AUTH');
    await assert.rejects(b.updateCredentials(second.url.replace('127.0.0.1', 'localhost')), /another server or vhost/);
    await b.updateCredentials(second.url);
    const before = await connectionsOf(first.user);
    assert.equal(before.length, 1, 'the open connection stays');
    await closeConnection(before[0]!.pid, 'test: reconnect with rotated credentials');
    await b.publish(queue, message(2));
    assert.equal((await connectionsOf(second.user)).length, 1, 'the new connection logs in as the new user');
    assert.equal(await b.queueLength(queue), 2);
    await b.purge(queue);
  });

  it('a refused login fails fast with ERR_AUTH, counts a security event, and never shows the password', async (t) => {
    if (!requireService(t, ready, 'RabbitMQ')) return;
    resetSecurityEvents();
    const password = 'Wr0ng-but-long-enough-Pa55word!';
    const b = make({}, vh.url({ password }));
    const t0 = Date.now();
    await assert.rejects(b.connect(), (e: unknown) => {
      assert.ok(e instanceof ConnectionError);
      assert.equal(e.code, 'ERR_AUTH');
      assert.ok(!e.message.includes(password) && !String(e.stack).includes(password));
      assert.match(e.message, /refused the login/);
      return true;
    });
    assert.ok(Date.now() - t0 < 5000, 'no retry loop on a refused login');
    assert.equal(securityCounters().auth_failure, 1);
    // A valid user without permissions on the vhost: named as such, not as a network failure.
    const outsider = await vh.addUser({ configure: '.*', write: '.*', read: '.*' });
    await ctl(['clear_permissions', '-p', vh.vhost, outsider.user]);
    await assert.rejects(make({}, outsider.url).connect(), (e: unknown) => e instanceof ConnectionError && e.code === 'ERR_AUTH' && /may not access this virtual host/.test(e.message));
  });

  it('an unreachable broker fails fast with a clear ConnectionError', async (t) => {
    if (!requireService(t, ready, 'RabbitMQ')) return;
    const b = make({ brokerConnectionTimeout: 1 }, vh.url({ port: 1 }));
    await assert.rejects(b.connect(), (e: unknown) => e instanceof ConnectionError && /127\.0\.0\.1:1\b.*connection refused/.test(e.message));
  });

  it('the policy refuses guest/guest and plaintext off loopback before any connection', async () => {
    for (const url of ['amqp://guest:guest@rabbit.example.com:5672//', 'amqps://guest:guest@rabbit.example.com:5671//', 'amqp://rabbit.example.com//']) {
      const app = createApp({ brokerUrl: url, backend: null, logger, env: { NODE_ENV: 'test' } });
      await assert.rejects(app.broker(), (e: unknown) => {
        assert.ok(e instanceof InsecureConfigError, String(e));
        const ids = e.findings.map((f) => f.id);
        if (url.startsWith('amqp:')) assert.ok(ids.includes('CEL-003'), 'plaintext refused');
        assert.ok(ids.includes(url.includes('guest') ? 'CEL-011' : 'CEL-001'), ids.join());
        return true;
      });
      await app.close();
    }
  });
});
