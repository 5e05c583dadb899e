/**
 * The broker conformance suite: one set of behaviours every Broker adapter
 * must pass (kombu's idea of one transport test suite). Each adapter's test
 * file calls `brokerConformance()` with a factory.
 */
import assert from 'node:assert/strict';
import { describe, it, after, before } from 'node:test';
import type { Broker, BroadcastDelivery, Consumer, Delivery, Exchange, MalformedBroadcast } from '../../src/core/broker.ts';
import { buildTaskMessage } from '../../src/protocol/task-message.ts';
import { JSON_SERIALIZER } from '../../src/codec/serializers.ts';
import { newId } from '../../src/protocol/ids.ts';
import type { WireMessage } from '../../src/protocol/types.ts';
import { QueueFullError } from '../../src/errors.ts';
import { sleep, waitFor } from '../helpers/services.ts';

export interface BrokerFactoryOptions {
  /** Seconds before an unacknowledged message of a dead consumer is redelivered. */
  visibilityTimeout?: number;
}

export interface ConformanceTarget {
  /** Create a fresh broker (connected lazily); the suite closes it. */
  create(options?: BrokerFactoryOptions): Promise<Broker>;
  /** Priority semantics: kombu Redis/SQLite (0 first) or AMQP (highest first). */
  priority: 'lower-first' | 'higher-first';
  /**
   * Have another process take `count` messages from `queue` and die by
   * SIGKILL without settling them. When absent, the redelivery test is skipped.
   */
  crash?(queue: string, count: number, options: BrokerFactoryOptions): Promise<void>;
  /**
   * When a dead consumer's messages come back: after the visibility timeout
   * (kombu-style brokers, the default) or as soon as its connection drops (AMQP).
   */
  redelivery?: 'visibility-timeout' | 'on-disconnect';
  /** Put raw bytes/text that is not a valid message on a queue. */
  injectMalformed?(queue: string): Promise<void>;
  /** Put something that is not a message on a broadcast exchange's channel (fanout suite). */
  injectMalformedBroadcast?(exchange: Exchange, routingKey: string): Promise<void>;
  /** Set up once before the suite (start servers), torn down after. */
  setup?(): Promise<void>;
  teardown?(): Promise<void>;
}

function message(i: number, extra: Partial<{ priority: number }> = {}): WireMessage {
  return buildTaskMessage({ task: 'tasks.add', id: newId(), args: [i, i], kwargs: { n: i }, priority: extra.priority ?? 0 }, JSON_SERIALIZER);
}

function argOf(d: Delivery): number {
  return (JSON.parse(d.message.body.toString()) as [number[]])[0]![0]!;
}

/** Collect deliveries into an array; helper for the tests. */
async function collect(broker: Broker, queues: string[], prefetch: number): Promise<{ got: Delivery[]; consumer: Consumer }> {
  const got: Delivery[] = [];
  const consumer = await broker.consume(queues, { prefetch }, (d) => got.push(d));
  return { got, consumer };
}

export function brokerConformance(name: string, target: ConformanceTarget): void {
  describe(`broker conformance: ${name}`, () => {
    const open: Broker[] = [];
    const make = async (o?: BrokerFactoryOptions): Promise<Broker> => {
      const b = await target.create(o);
      open.push(b);
      return b;
    };
    const q = (): string => `cq-${newId().slice(0, 8)}`;

    before(async () => target.setup?.());
    after(async () => {
      await Promise.allSettled(open.map((b) => b.close()));
      await target.teardown?.();
    });

    it('delivers a published message intact', async () => {
      const broker = await make();
      const queue = q();
      const m = message(7);
      await broker.publish(queue, m);
      assert.equal(await broker.queueLength(queue), 1);
      const { got, consumer } = await collect(broker, [queue], 10);
      await waitFor(() => got.length === 1, 5000, 'delivery');
      const d = got[0]!;
      assert.equal(d.queue, queue);
      assert.deepEqual(d.message.headers, m.headers);
      assert.equal(d.message.contentType, 'application/json');
      assert.equal(d.message.contentEncoding, 'utf-8');
      assert.deepEqual(d.message.body, m.body);
      assert.equal(d.message.properties.correlation_id, m.properties.correlation_id);
      assert.equal(d.redelivered, false);
      await d.ack();
      await consumer.cancel();
      assert.equal(await broker.queueLength(queue), 0);
    });

    it('keeps FIFO order and serves priorities in the broker order', async () => {
      const broker = await make();
      const queue = q();
      await broker.publishMany([0, 1, 2].map((i) => ({ queue, message: message(i) })));
      await broker.publish(queue, message(100, { priority: 9 }), { priority: 9 });
      await broker.publish(queue, message(50, { priority: 5 }), { priority: 5 });
      const { got, consumer } = await collect(broker, [queue], 100);
      await waitFor(() => got.length === 5, 5000, '5 deliveries');
      const order = got.map(argOf);
      if (target.priority === 'lower-first') assert.deepEqual(order, [0, 1, 2, 50, 100]);
      else assert.deepEqual(order, [100, 50, 0, 1, 2]);
      await Promise.all(got.map((d) => d.ack()));
      await consumer.cancel();
    });

    it('never holds more unsettled deliveries than the prefetch', async () => {
      const broker = await make();
      const queue = q();
      await broker.publishMany(Array.from({ length: 10 }, (_, i) => ({ queue, message: message(i) })));
      const { got, consumer } = await collect(broker, [queue], 3);
      await waitFor(() => got.length === 3, 5000, '3 deliveries');
      await sleep(200);
      assert.equal(got.length, 3);
      assert.equal(consumer.unsettled, 3);
      await got[0]!.ack();
      await waitFor(() => got.length === 4, 5000, 'one more after an ack');
      consumer.setPrefetch(0);
      await waitFor(() => got.length === 10, 5000, 'all after prefetch 0');
      await Promise.all(got.slice(1).map((d) => d.ack()));
      await consumer.cancel();
    });

    it('delivers each message to exactly one of several consumers', async () => {
      const a = await make();
      const b = await make();
      const queue = q();
      const seen = new Map<number, number>();
      const onMsg = (d: Delivery): void => {
        const n = argOf(d);
        seen.set(n, (seen.get(n) ?? 0) + 1);
        void d.ack();
      };
      const ca = await a.consume([queue], { prefetch: 10 }, onMsg);
      const cb = await b.consume([queue], { prefetch: 10 }, onMsg);
      await a.publishMany(Array.from({ length: 300 }, (_, i) => ({ queue, message: message(i) })));
      await waitFor(() => seen.size === 300, 15_000, '300 distinct deliveries');
      await sleep(200);
      assert.ok([...seen.values()].every((n) => n === 1), 'no duplicates');
      await ca.cancel();
      await cb.cancel();
    });

    it('reject(true) redelivers flagged as redelivered; reject(false) drops', async () => {
      const broker = await make();
      const queue = q();
      await broker.publish(queue, message(1));
      await broker.publish(queue, message(2));
      const { got, consumer } = await collect(broker, [queue], 10);
      await waitFor(() => got.length === 2, 5000, 'two deliveries');
      const first = got.find((d) => argOf(d) === 1)!;
      const second = got.find((d) => argOf(d) === 2)!;
      await first.reject(true);
      await second.reject(false);
      await waitFor(() => got.length === 3, 5000, 'redelivery');
      assert.equal(argOf(got[2]!), 1);
      assert.equal(got[2]!.redelivered, true);
      await got[2]!.ack();
      await sleep(150);
      assert.equal(got.length, 3);
      await consumer.cancel();
      assert.equal(await broker.queueLength(queue), 0);
    });

    it('dead-letters with the reason and does not redeliver', async () => {
      const broker = await make();
      const queue = q();
      const m = message(9);
      await broker.publish(queue, m);
      const { got, consumer } = await collect(broker, [queue], 10);
      await waitFor(() => got.length === 1, 5000, 'delivery');
      await got[0]!.deadLetter('unit-test reason');
      await sleep(150);
      assert.equal(got.length, 1);
      const dead = await broker.deadLetters(queue);
      assert.equal(dead.length, 1);
      assert.equal(dead[0]!.reason, 'unit-test reason');
      assert.equal(dead[0]!.message?.headers.id, m.headers.id);
      await consumer.cancel();
    });

    /** Dead-letter the messages of `ms` on `queue` (published, delivered, dead-lettered in order). */
    const deadLetterAll = async (broker: Broker, queue: string, ms: WireMessage[]): Promise<void> => {
      await broker.publishMany(ms.map((m) => ({ queue, message: m })));
      const got: Delivery[] = [];
      let malformed = 0;
      // A message over the target's decode limit is dead-lettered by the consumer itself.
      const consumer = await broker.consume([queue], { prefetch: 100, onMalformed: () => malformed++ }, (d) => got.push(d));
      await waitFor(() => got.length + malformed === ms.length, 5000, 'deliveries to dead-letter');
      for (const d of got) await d.deadLetter('unit-test: unknown task');
      await consumer.cancel();
    };

    it('redriveDeadLetters moves each dead letter back once (all, by id, or to another queue)', async (t) => {
      const broker = await make();
      if (!broker.redriveDeadLetters) return t.skip('this broker has no redriveDeadLetters');
      const queue = q();
      const other = q();
      const ms = [1, 2, 3].map((i) => message(i));
      await deadLetterAll(broker, queue, ms);
      assert.equal((await broker.deadLetters(queue)).length, 3);
      const byId = await broker.redriveDeadLetters(queue, { ids: [ms[1]!.headers.id as string], to: other });
      assert.deepEqual(byId, { moved: [ms[1]!.headers.id], refused: [] });
      assert.equal(await broker.queueLength(other), 1);
      const rest = await broker.redriveDeadLetters(queue);
      assert.deepEqual(new Set(rest.moved), new Set([ms[0]!.headers.id, ms[2]!.headers.id]));
      assert.deepEqual(await broker.redriveDeadLetters(queue), { moved: [], refused: [] }, 'a second redrive moves nothing');
      assert.equal((await broker.deadLetters(queue)).length, 0);
      const { got, consumer } = await collect(broker, [queue, other], 10);
      await waitFor(() => got.length === 3, 5000, 'the redriven messages');
      await sleep(150);
      assert.equal(got.length, 3, 'nothing duplicated');
      assert.deepEqual(got.map((d) => d.message.headers.id).sort(), ms.map((m) => m.headers.id).sort(), 'nothing lost');
      assert.deepEqual(got.find((d) => d.queue === other)?.message.body, ms[1]!.body, 'intact');
      for (const d of got) await d.ack();
      await consumer.cancel();
    });

    it('redriveDeadLetters refuses a truncated record and leaves it in place', async (t) => {
      const broker = await make();
      if (!broker.redriveDeadLetters) return t.skip('this broker has no redriveDeadLetters');
      const queue = q();
      const big = buildTaskMessage({ task: 'tasks.add', id: newId(), args: ['x'.repeat(200_000)], kwargs: {} }, JSON_SERIALIZER);
      await deadLetterAll(broker, queue, [big]);
      const [dead] = await broker.deadLetters(queue);
      const out = await broker.redriveDeadLetters(queue);
      if (dead!.truncated) {
        assert.equal(out.moved.length, 0);
        assert.equal(out.refused.length, 1);
        assert.match(out.refused[0]!.reason, /truncated/);
        assert.equal((await broker.deadLetters(queue)).length, 1, 'still there');
        assert.equal(await broker.queueLength(queue), 0);
      } else {
        // This engine keeps large messages whole: it is redriven intact.
        assert.deepEqual(out.moved, [big.headers.id]);
        assert.equal(await broker.queueLength(queue), 1);
      }
    });

    it('dropDeadLetters deletes the chosen dead letters', async (t) => {
      const broker = await make();
      if (!broker.dropDeadLetters) return t.skip('this broker has no dropDeadLetters');
      const queue = q();
      const ms = [1, 2, 3].map((i) => message(i));
      await deadLetterAll(broker, queue, ms);
      assert.equal(await broker.dropDeadLetters(queue, { ids: [ms[0]!.headers.id as string] }), 1);
      assert.deepEqual((await broker.deadLetters(queue)).map((d) => d.message?.headers.id).sort(), [ms[1]!.headers.id, ms[2]!.headers.id].sort());
      assert.equal(await broker.dropDeadLetters(queue, { limit: 1 }), 1);
      assert.equal(await broker.dropDeadLetters(queue), 1);
      assert.equal((await broker.deadLetters(queue)).length, 0);
      assert.equal(await broker.queueLength(queue), 0);
    });

    it('recoverOwner gives back, drops and dead-letters (with the reason) the deliveries of a dead consumer', async (t) => {
      const broker = await make();
      if (!broker.recoverOwner) {
        t.skip(`${broker.kind} has no recoverOwner (its messages come back when the connection drops)`);
        return;
      }
      const queue = q();
      const ms = [message(1), message(2), message(3)];
      for (const m of ms) await broker.publish(queue, m);
      const { got, consumer } = await collect(broker, [queue], 10);
      await waitFor(() => got.length === 3, 5000, 'deliveries');
      await consumer.cancel();
      const byArg = new Map(got.map((d) => [argOf(d), d]));
      const n = await broker.recoverOwner(consumer.owner!, { drop: [byArg.get(2)!.deliveryTag], deadLetter: new Map([[byArg.get(3)!.deliveryTag, 'crashed its worker process 4 times']]) });
      assert.equal(n, 1);
      assert.equal(await broker.queueLength(queue), 1);
      const dead = await broker.deadLetters(queue);
      assert.equal(dead.length, 1);
      assert.equal(dead[0]!.reason, 'crashed its worker process 4 times');
      assert.equal(dead[0]!.message?.headers.id, ms[2]!.headers.id);
    });

    it('refuses a publish past maxLength with QueueFullError (PublishOptions.maxLength)', async () => {
      const broker = await make();
      const queue = q();
      await broker.publishMany([1, 2].map((i) => ({ queue, message: message(i), options: { maxLength: 3 } })));
      await broker.publish(queue, message(3), { maxLength: 3 });
      await assert.rejects(broker.publish(queue, message(4), { maxLength: 3 }), (e: unknown) => e instanceof QueueFullError && e.queue === queue && e.limit === 3);
      await assert.rejects(broker.publishMany([5, 6].map((i) => ({ queue, message: message(i), options: { maxLength: 4 } }))), QueueFullError);
      assert.equal(await broker.queueLength(queue), 3);
      await broker.purge(queue);
    });

    it('settling twice is harmless', async () => {
      const broker = await make();
      const queue = q();
      await broker.publish(queue, message(1));
      const { got, consumer } = await collect(broker, [queue], 10);
      await waitFor(() => got.length === 1, 5000, 'delivery');
      await got[0]!.ack();
      await got[0]!.ack();
      await got[0]!.reject(true);
      await sleep(150);
      assert.equal(got.length, 1);
      assert.equal(await broker.queueLength(queue), 0);
      await consumer.cancel();
    });

    it('after cancel, nothing new is delivered but unsettled deliveries still settle', async () => {
      const broker = await make();
      const queue = q();
      await broker.publish(queue, message(1));
      const { got, consumer } = await collect(broker, [queue], 10);
      await waitFor(() => got.length === 1, 5000, 'delivery');
      await consumer.cancel();
      await broker.publish(queue, message(2));
      await sleep(300);
      assert.equal(got.length, 1);
      await got[0]!.ack();
      assert.equal(await broker.queueLength(queue), 1);
      assert.equal(await broker.purge(queue), 1);
      assert.equal(await broker.queueLength(queue), 0);
    });

    it('close() gives unsettled deliveries back to the queue', async () => {
      const a = await make();
      const queue = q();
      await a.publish(queue, message(1));
      const { got } = await collect(a, [queue], 10);
      await waitFor(() => got.length === 1, 5000, 'delivery');
      await a.close();
      const b = await make();
      assert.equal(await b.queueLength(queue), 1);
      const { got: got2, consumer } = await collect(b, [queue], 10);
      await waitFor(() => got2.length === 1, 5000, 'redelivery to another consumer');
      assert.equal(argOf(got2[0]!), 1);
      await got2[0]!.ack();
      await consumer.cancel();
    });

    if (target.injectMalformed) {
      it('dead-letters a malformed message and reports it, then keeps serving', async () => {
        const broker = await make();
        const queue = q();
        await target.injectMalformed!(queue);
        await broker.publish(queue, message(5));
        const malformed: string[] = [];
        const got: Delivery[] = [];
        const consumer = await broker.consume([queue], { prefetch: 10, onMalformed: (m) => malformed.push(m.reason) }, (d) => got.push(d));
        await waitFor(() => got.length === 1 && malformed.length === 1, 5000, 'one good delivery and one malformed report');
        assert.equal(argOf(got[0]!), 5);
        await got[0]!.ack();
        assert.equal((await broker.deadLetters(queue)).length, 1);
        await consumer.cancel();
      });
    }

    if (target.crash) {
      it('redelivers the unacked messages of a dead consumer after the visibility timeout', async () => {
        const survivor = await make({ visibilityTimeout: 1 });
        const queue = q();
        await survivor.publishMany([1, 2, 3].map((i) => ({ queue, message: message(i) })));
        await target.crash!(queue, 3, { visibilityTimeout: 1 });
        if (target.redelivery !== 'on-disconnect') assert.equal(await survivor.queueLength(queue), 0, 'the dead consumer had taken all three');
        const { got: again, consumer } = await collect(survivor, [queue], 10);
        await waitFor(() => again.length === 3, 15_000, 'redelivery after the visibility timeout');
        assert.deepEqual(again.map(argOf).sort(), [1, 2, 3]);
        assert.ok(again.every((d) => d.redelivered));
        await Promise.all(again.map((d) => d.ack()));
        await consumer.cancel();
      });

    }

    {
      it('a live consumer keeps its lease: held messages are not redelivered', async () => {
        const holder = await make({ visibilityTimeout: 1 });
        const other = await make({ visibilityTimeout: 1 });
        const queue = q();
        await holder.publish(queue, message(1));
        const { got } = await collect(holder, [queue], 10);
        await waitFor(() => got.length === 1, 5000, 'delivery');
        const { got: stolen, consumer } = await collect(other, [queue], 10);
        await sleep(3500);
        assert.equal(stolen.length, 0, 'message held by a live consumer must not be redelivered');
        await got[0]!.ack();
        await consumer.cancel();
      });
    }
    fanoutConformance(target, make);
  });
}

/** An event-like broadcast (what Celery's dispatcher sends: transient, JSON body). */
function broadcastMessage(n: number, extra: Record<string, unknown> = {}): WireMessage {
  return {
    headers: { hostname: 'conformance@localhost' },
    properties: { delivery_mode: 1, priority: 0 },
    contentType: 'application/json',
    contentEncoding: 'utf-8',
    body: Buffer.from(JSON.stringify({ type: 'worker-heartbeat', n, ...extra })),
  };
}

function nOf(d: BroadcastDelivery): number {
  return (JSON.parse(d.message.body.toString()) as { n: number }).n;
}

/**
 * Fanout (events, remote control): run inside every engine's broker suite.
 * Exchange names are fresh per test, so tests sharing a server never meet.
 */
function fanoutConformance(target: ConformanceTarget, make: () => Promise<Broker>): void {
  describe('fanout', () => {
    const name = (): string => `fx-${newId().slice(0, 8)}`;
    const topic = (): Exchange => ({ name: name(), type: 'topic', durable: true });
    const fanout = (): Exchange => ({ name: name(), type: 'fanout', durable: false });

    it('every subscriber gets each broadcast exactly once, intact and in order', async () => {
      const a = await make();
      const b = await make();
      const ex = fanout();
      const got: BroadcastDelivery[][] = [[], [], []];
      const subs = [
        await a.subscribe(ex, {}, (d) => got[0]!.push(d)),
        await a.subscribe(ex, {}, (d) => got[1]!.push(d)),
        await b.subscribe(ex, { queue: `node@conformance.${ex.name}` }, (d) => got[2]!.push(d)),
      ];
      assert.equal(subs[2]!.queue, `node@conformance.${ex.name}`);
      for (let i = 0; i < 20; i++) await (i % 2 ? a : b).broadcast(ex, '', broadcastMessage(i));
      await waitFor(() => got.every((g) => g.length >= 20), 10_000, 'every subscriber got 20');
      await sleep(300);
      for (const g of got) {
        assert.deepEqual(g.map(nOf), Array.from({ length: 20 }, (_, i) => i));
        assert.equal(g[0]!.exchange, ex.name);
        assert.deepEqual(g[0]!.message.headers, { hostname: 'conformance@localhost' });
        assert.equal(g[0]!.message.contentType, 'application/json');
        assert.equal(g[0]!.message.contentEncoding, 'utf-8');
        assert.equal(g[0]!.message.properties.delivery_mode, 1);
      }
      for (const s of subs) await s.close();
    });

    it('topic exchanges route by binding key with AMQP rules (`*` one word, `#` any), once per subscription', async () => {
      const a = await make();
      const ex = topic();
      const keys: Record<string, string[]> = {
        'task.*': ['task.sent', 'task.multi'],
        '#': ['task.sent', 'task.multi', 'worker.heartbeat', 'worker.online', 'task.x.y'],
        'worker.#': ['worker.heartbeat', 'worker.online'],
        '*.heartbeat': ['worker.heartbeat'],
        'task.*|#': ['task.sent', 'task.multi', 'worker.heartbeat', 'worker.online', 'task.x.y'],
        'worker.online': ['worker.online'],
      };
      const got = new Map<string, string[]>();
      const subs = [];
      for (const k of Object.keys(keys)) {
        got.set(k, []);
        subs.push(await a.subscribe(ex, { bindingKeys: k.split('|') }, (d) => got.get(k)!.push(d.routingKey)));
      }
      const b = await make();
      for (const rk of keys['#']!) await b.broadcast(ex, rk, broadcastMessage(0));
      await waitFor(() => Object.entries(keys).every(([k, want]) => got.get(k)!.length >= want.length), 10_000, 'topic deliveries');
      await sleep(300);
      for (const [k, want] of Object.entries(keys)) assert.deepEqual(got.get(k), want, `binding ${k}`);
      for (const s of subs) await s.close();
    });

    it('broadcastMany: one batch, each message under its own key, in order with the broadcasts around it', async () => {
      const a = await make();
      const b = await make();
      assert.equal(typeof a.broadcastMany, 'function', 'every engine implements broadcastMany');
      const ex = topic();
      const all: BroadcastDelivery[][] = [[], []];
      const tasks: string[] = [];
      const subs = [
        await a.subscribe(ex, {}, (d) => all[0]!.push(d)),
        await b.subscribe(ex, {}, (d) => all[1]!.push(d)),
        await b.subscribe(ex, { bindingKeys: ['task.*'] }, (d) => tasks.push(`${d.routingKey}:${nOf(d)}`)),
      ];
      const keys = ['task.multi', 'task.multi', 'worker.heartbeat', 'task.multi', 'worker.offline', 'task.multi', 'task.multi', 'task.multi', 'task.multi', 'task.multi'];
      await b.broadcast(ex, 'worker.online', broadcastMessage(0));
      await b.broadcastMany!(ex, keys.map((routingKey, i) => ({ routingKey, message: broadcastMessage(i + 1, { pad: 'x'.repeat(i * 100) }) })));
      await b.broadcastMany!(ex, []);
      await b.broadcastMany!(ex, [{ routingKey: 'task.multi', message: broadcastMessage(11) }]);
      await b.broadcast(ex, 'worker.heartbeat', broadcastMessage(12));
      await waitFor(() => all.every((g) => g.length >= 13), 10_000, 'every subscriber got 13');
      await sleep(300);
      const want = ['worker.online', ...keys, 'task.multi', 'worker.heartbeat'];
      for (const g of all) {
        assert.deepEqual(g.map(nOf), Array.from({ length: 13 }, (_, i) => i));
        assert.deepEqual(g.map((d) => d.routingKey), want);
        assert.equal(g[5]!.message.body.toString(), broadcastMessage(5, { pad: 'x'.repeat(400) }).body.toString(), 'intact');
        assert.deepEqual(g[5]!.message.headers, { hostname: 'conformance@localhost' });
        assert.equal(g[5]!.message.properties.delivery_mode, 1);
      }
      assert.deepEqual(tasks, want.map((k, i) => `${k}:${i}`).filter((t) => t.startsWith('task.')));
      for (const s of subs) await s.close();
    });

    it('a subscriber that joins later gets only later broadcasts; close() stops delivery', async () => {
      const a = await make();
      const ex = topic();
      const early: number[] = [];
      const late: number[] = [];
      const s1 = await a.subscribe(ex, {}, (d) => early.push(nOf(d)));
      await a.broadcast(ex, 'worker.heartbeat', broadcastMessage(1));
      await waitFor(() => early.length === 1, 5000, 'first broadcast');
      const s2 = await (await make()).subscribe(ex, {}, (d) => late.push(nOf(d)));
      await a.broadcast(ex, 'worker.heartbeat', broadcastMessage(2));
      await waitFor(() => early.length === 2 && late.length === 1, 5000, 'second broadcast');
      await sleep(300);
      assert.deepEqual(late, [2]);
      await s1.close();
      await s1.close();
      await a.broadcast(ex, 'worker.heartbeat', broadcastMessage(3));
      await waitFor(() => late.length === 2, 5000, 'third broadcast to the open subscription');
      await sleep(300);
      assert.deepEqual(early, [1, 2]);
      assert.deepEqual(late, [2, 3]);
      await s2.close();
    });

    it('never delivers one exchange\'s broadcasts to another exchange\'s subscribers', async () => {
      const a = await make();
      const base = name();
      const exchanges: Exchange[] = [
        { name: base, type: 'topic', durable: true },
        { name: `${base}.other`, type: 'topic', durable: true },
        { name: `${base}x`, type: 'fanout', durable: false },
        { name: `${base}.pidbox`, type: 'fanout', durable: false },
      ];
      const got = exchanges.map(() => [] as string[]);
      const subs = [];
      for (let i = 0; i < exchanges.length; i++) subs.push(await a.subscribe(exchanges[i]!, {}, (d) => got[i]!.push(d.exchange)));
      const b = await make();
      for (const ex of exchanges) await b.broadcast(ex, ex.type === 'topic' ? 'task.sent' : '', broadcastMessage(0));
      await waitFor(() => got.every((g) => g.length >= 1), 5000, 'one broadcast per exchange');
      await sleep(300);
      for (let i = 0; i < exchanges.length; i++) assert.deepEqual(got[i], [exchanges[i]!.name]);
      for (const s of subs) await s.close();
    });

    it('reply queue: a reply sent to its routing key arrives once; receive() times out; other keys stay apart', async () => {
      const client = await make();
      const worker = await make();
      const ex: Exchange = { name: `reply.${name()}.pidbox`, type: 'direct', durable: false };
      const oid = newId();
      const rq = await client.openReplyQueue(ex, oid);
      assert.equal(rq.queue, `${oid}.${ex.name}`);
      const other = await client.openReplyQueue(ex, newId());
      await worker.sendReply(ex, oid, broadcastMessage(1, { 'worker@a': { ok: 'pong' } }));
      await worker.sendReply(ex, oid, broadcastMessage(2));
      const first = await rq.receive(5000);
      assert.ok(first, 'a reply within 5 s');
      assert.equal(nOf(first), 1);
      assert.equal(first.routingKey, oid);
      assert.equal(first.exchange, ex.name);
      assert.equal(nOf((await rq.receive(5000))!), 2);
      const t0 = Date.now();
      assert.equal(await rq.receive(300), undefined);
      assert.ok(Date.now() - t0 >= 250, 'receive() waited for its timeout');
      assert.equal(await other.receive(100), undefined);
      await rq.close();
      await other.close();
      // Closed: nothing waits, and a late reply goes nowhere.
      assert.equal(await rq.receive(1000), undefined);
      await worker.sendReply(ex, oid, broadcastMessage(3));
    });

    it('a pending receive() resolves when a reply arrives', async () => {
      const client = await make();
      const ex: Exchange = { name: `reply.${name()}.pidbox`, type: 'direct', durable: false };
      const oid = newId();
      const rq = await client.openReplyQueue(ex, oid);
      const pending = rq.receive(5000);
      await sleep(100);
      await (await make()).sendReply(ex, oid, broadcastMessage(7));
      const d = await pending;
      assert.equal(d && nOf(d), 7);
      await rq.close();
    });

    if (target.injectMalformedBroadcast) {
      it('drops what is not a message with a reported reason and keeps the subscription', async () => {
        const a = await make();
        const ex = topic();
        const bad: MalformedBroadcast[] = [];
        const good: number[] = [];
        const s = await a.subscribe(ex, { onMalformed: (m) => bad.push(m) }, (d) => good.push(nOf(d)));
        await target.injectMalformedBroadcast!(ex, 'worker.heartbeat');
        await a.broadcast(ex, 'worker.heartbeat', broadcastMessage(5));
        await waitFor(() => bad.length === 1 && good.length === 1, 10_000, 'one malformed report and one delivery');
        assert.equal(bad[0]!.exchange, ex.name);
        assert.ok(bad[0]!.reason.length > 0, 'a reason');
        await a.broadcast(ex, 'worker.heartbeat', broadcastMessage(6));
        await waitFor(() => good.length === 2, 5000, 'still subscribed');
        assert.deepEqual(good, [5, 6]);
        await s.close();
      });
    }
  });
}
