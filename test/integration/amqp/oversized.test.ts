/**
 * Oversized AMQP messages are never assembled (issue 20 #7, AMQP part): a
 * delivery whose content header announces more than the body limit is
 * dead-lettered with its id, its size and the reason, keeping only the
 * first KiB; its body frames are dropped as they arrive, so no buffer near
 * its size is ever made; the channel and the connection stay up and the
 * messages behind it are served. Against the shared RabbitMQ (own vhost).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createAmqpBroker, type AmqpBroker } from '../../../src/transport/amqp/broker.ts';
import { amqpEndpoint, FRAME_MAX } from '../../../src/transport/amqp/connection.ts';
import { contentGuardActive } from '../../../src/transport/amqp/content-guard.ts';
import type { BroadcastDelivery, Delivery } from '../../../src/core/broker.ts';
import { JSON_SERIALIZER } from '../../../src/codec/serializers.ts';
import { resolveSettings } from '../../../src/config/options.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { newId } from '../../../src/protocol/ids.ts';
import { buildTaskMessage } from '../../../src/protocol/task-message.ts';
// After Celeriac, so that amqplib loads behind Celeriac's guards.
import { connect } from 'amqplib';
import { requireService, sleep, waitFor } from '../../helpers/services.ts';
import { createTestVhost, hasRabbitmq, type TestVhost } from './support/rabbit.ts';

const ready = hasRabbitmq();
const logger = createLogger({ level: 'silent' });
const MAX = 64 * 1024;
const BIG = 16 * 1024 * 1024;

/** Record the largest buffer `Buffer.concat` makes while `fn` runs (amqplib assembles a body with it). */
async function largestConcat<T>(fn: () => Promise<T>): Promise<{ result: T; largest: number }> {
  const concat = Buffer.concat;
  let largest = 0;
  Buffer.concat = function spy(list: readonly Uint8Array[], total?: number): Buffer {
    const out = concat.call(Buffer, list, total);
    if (out.length > largest) largest = out.length;
    return out;
  } as typeof Buffer.concat;
  try {
    const result = await fn();
    return { result, largest };
  } finally {
    Buffer.concat = concat;
  }
}

describe('amqp oversized messages', () => {
  let vh: TestVhost;
  const open: AmqpBroker[] = [];
  const make = (): AmqpBroker => {
    const b = createAmqpBroker({ url: vh.url(), logger, settings: resolveSettings({ decodeLimits: { maxBytes: MAX }, brokerTransportOptions: { reconnectDelayMs: 50, reconnectDelayMaxMs: 500 } }) });
    open.push(b);
    return b;
  };
  before(async () => {
    if (ready) vh = await createTestVhost('oversized');
  });
  after(async () => {
    await Promise.allSettled(open.map((b) => b.close()));
    if (ready) await vh.delete();
  });

  it('frames: Celeriac asks for frame_max 128 KiB and refuses a larger incoming frame (amqplib would buffer up to 64 MiB)', () => {
    const e = amqpEndpoint('amqp://u:p@127.0.0.1:5672//', resolveSettings({}));
    assert.equal(e.connect.frameMax, FRAME_MAX);
    assert.equal(e.connect.maxFrameSize, FRAME_MAX);
    assert.equal(contentGuardActive(), true);
  });

  it('a 16 MiB task is dead-lettered by reference (id, size, reason, first KiB) without being assembled; the connection survives and the next message runs', async (t) => {
    if (!requireService(t, ready, 'RabbitMQ')) return;
    const b = make();
    const queue = `big-${newId().slice(0, 8)}`;
    await b.publish(queue, buildTaskMessage({ task: 'tasks.small', id: 'small-1', args: [1], kwargs: {} }, JSON_SERIALIZER));
    // Sent as a foreign producer would: Celeriac's own client refuses to build it with these limits.
    const big = buildTaskMessage({ task: 'tasks.big', id: 'big-1', args: ['x'.repeat(BIG)], kwargs: {} }, JSON_SERIALIZER);
    const raw = await connect(vh.url());
    const ch = await raw.createConfirmChannel();
    ch.sendToQueue(queue, big.body, { headers: big.headers, contentType: big.contentType, contentEncoding: big.contentEncoding, correlationId: 'big-1' });
    await ch.waitForConfirms();
    await raw.close();
    await b.publish(queue, buildTaskMessage({ task: 'tasks.small', id: 'small-2', args: [2], kwargs: {} }, JSON_SERIALIZER));

    const got: Delivery[] = [];
    const malformed: Array<{ id: string | undefined; reason: string }> = [];
    const errors: Error[] = [];
    const { largest } = await largestConcat(async () => {
      const c = await b.consume([queue], { prefetch: 10, onMalformed: (m) => malformed.push(m), onError: (e) => errors.push(e) }, (d) => got.push(d));
      await waitFor(() => got.length === 2 && malformed.length === 1, 30_000, 'two small, one oversized');
      for (const d of got) await d.ack();
      await sleep(200);
      await c.cancel();
    });
    t.diagnostic(`largest Buffer.concat ${largest} B`);
    assert.ok(largest < 1024 * 1024, `a ${largest}-byte buffer was assembled`);
    assert.deepEqual(got.map((d) => d.message.headers.id), ['small-1', 'small-2']);
    assert.equal(malformed[0]!.id, 'big-1');
    assert.match(malformed[0]!.reason, new RegExp(`body of ${big.body.length} bytes exceeds the ${MAX}-byte limit \\(not read`));
    assert.deepEqual(errors, [], 'no channel or connection loss');
    const dead = await b.deadLetters(queue);
    assert.equal(dead.length, 1);
    assert.equal(dead[0]!.message?.headers.id, 'big-1');
    assert.equal(dead[0]!.truncated, true);
    assert.equal(dead[0]!.raw.length, 1024);
    assert.equal(dead[0]!.raw, big.body.subarray(0, 1024).toString());
    assert.match(dead[0]!.reason, /exceeds the 65536-byte limit/);
    // The record carries the real size, and a truncated record is never redriven.
    const redrive = await b.redriveDeadLetters(queue);
    assert.equal(redrive.moved.length, 0);
    assert.equal(redrive.refused[0]?.id, 'big-1');
    assert.equal(await b.queueLength(queue), 0);
  });

  it('a broadcast over the limit is dropped as malformed without being assembled; the subscription keeps receiving', async (t) => {
    if (!requireService(t, ready, 'RabbitMQ')) return;
    const b = make();
    const exchange = { name: `bx-${newId().slice(0, 8)}`, type: 'fanout' as const, durable: false };
    const got: BroadcastDelivery[] = [];
    const bad: string[] = [];
    const sub = await b.subscribe(exchange, { onMalformed: (m) => bad.push(m.reason) }, (m) => got.push(m));
    const msg = (id: string, size: number) => buildTaskMessage({ task: 't.b', id, args: ['y'.repeat(size)], kwargs: {} }, JSON_SERIALIZER);
    const { largest } = await largestConcat(async () => {
      const raw = await connect(vh.url());
      const ch = await raw.createConfirmChannel();
      for (const [id, size] of [['b-small-1', 10], ['b-big', 4 * 1024 * 1024], ['b-small-2', 10]] as const) {
        const m = msg(id, size);
        ch.publish(exchange.name, '', m.body, { headers: m.headers, contentType: m.contentType, contentEncoding: m.contentEncoding });
      }
      await ch.waitForConfirms();
      await raw.close();
      await waitFor(() => got.length === 2 && bad.length === 1, 20_000, 'two broadcasts and one refused');
    });
    assert.ok(largest < 1024 * 1024, `a ${largest}-byte buffer was assembled`);
    assert.deepEqual(got.map((m) => m.message.headers.id), ['b-small-1', 'b-small-2']);
    assert.match(bad[0]!, /exceeds the 65536-byte limit/);
    await sub.close();
  });
});
