import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConsumerCore, VirtualDelivery, type Held } from '../../../../src/transport/virtual/consumer-core.ts';
import { PullLoop, type PullSource } from '../../../../src/transport/virtual/pull-loop.ts';
import type { WireMessage } from '../../../../src/protocol/types.ts';

const message: WireMessage = { headers: {}, properties: {}, contentType: 'application/json', contentEncoding: 'utf-8', body: Buffer.from('[]') };

/** A queue of `available` messages behind the loop; records each fetch's room. */
function setup(options: { prefetch: number; available: number; enough?: PullSource['enough']; wakeOnAnySettle?: boolean; failFirst?: boolean }) {
  const rooms: number[] = [];
  const delivered: VirtualDelivery[] = [];
  const errors: Error[] = [];
  let available = options.available;
  let failed = !options.failFirst;
  let seq = 0;
  let loop!: PullLoop;
  const core: ConsumerCore<Held> = new ConsumerCore<Held>({
    consume: { prefetch: options.prefetch, onError: (e) => errors.push(e) },
    primitives: { ackMany: () => undefined, requeue: () => undefined, deadLetter: () => undefined, settled: () => loop.settled() },
    ackBatch: { max: 100, flush: 'tick' },
  });
  const source: PullSource = {
    batch: 5,
    unrefTimers: true,
    wakeOnAnySettle: options.wakeOnAnySettle ?? false,
    enough: options.enough,
    fetch(room) {
      if (!failed) {
        failed = true;
        throw new Error('reserve failed');
      }
      rooms.push(room);
      const n = Math.min(room, available);
      available -= n;
      for (let i = 0; i < n; i++) {
        const d = new VirtualDelivery(core, `t${++seq}`, 'q', message, false);
        core.hold(d);
        delivered.push(d);
      }
      return Promise.resolve(n);
    },
    afterFetch(taken, room) {
      return taken >= room ? undefined : loop.bell.wait(5000, true);
    },
  };
  loop = new PullLoop(core, source);
  return {
    core,
    loop,
    rooms,
    delivered,
    errors,
    add(n: number) {
      available += n;
      loop.wake();
    },
  };
}

const until = async (cond: () => boolean, ms = 5000) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
};

describe('PullLoop', () => {
  it('fetches in batches up to the prefetch window and waits for room', async () => {
    const t = setup({ prefetch: 7, available: 20 });
    t.loop.start();
    await until(() => t.delivered.length === 7);
    assert.deepEqual(t.rooms, [5, 2]);
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(t.delivered.length, 7, 'a full window takes nothing more');
    // A settle wakes the loop waiting for room.
    await t.delivered[0]!.ack();
    await until(() => t.delivered.length === 8);
    t.core.cancelled = true;
    await t.loop.stop();
  });

  it('is woken for new work and stops promptly', async () => {
    const t = setup({ prefetch: 0, available: 0 });
    t.loop.start();
    await until(() => t.rooms.length === 1);
    t.add(3);
    await until(() => t.delivered.length === 3);
    const started = Date.now();
    t.core.cancelled = true;
    await t.loop.stop();
    assert.ok(Date.now() - started < 1000);
  });

  it('holds back a fetch until `enough` says the room is worth it', async () => {
    const t = setup({ prefetch: 8, available: 100, enough: (room, unsettled) => unsettled === 0 || room >= 4 });
    t.loop.start();
    await until(() => t.delivered.length === 5);
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(t.delivered.length, 5, 'room for 3 of 8 is not enough');
    await t.delivered[0]!.ack();
    await until(() => t.delivered.length === 9);
    await t.delivered[1]!.ack();
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(t.delivered.length, 9, 'one free slot is not enough');
    for (const d of t.delivered.slice(2, 5)) await d.ack();
    await until(() => t.delivered.length === 13);
    assert.deepEqual(t.rooms, [5, 4, 4]);
    assert.equal(t.rooms.at(-1), 4);
    t.core.cancelled = true;
    await t.loop.stop();
  });

  it('reports a failed fetch and tries again', async () => {
    const t = setup({ prefetch: 0, available: 2, failFirst: true });
    t.loop.start();
    await until(() => t.delivered.length === 2);
    assert.equal(t.errors[0]?.message, 'reserve failed');
    t.core.cancelled = true;
    await t.loop.stop();
  });

  it('a settle wakes only a loop waiting for room, unless wakeOnAnySettle', async () => {
    for (const wakeOnAnySettle of [false, true]) {
      const t = setup({ prefetch: 10, available: 1, wakeOnAnySettle });
      t.loop.start();
      await until(() => t.delivered.length === 1);
      await new Promise((r) => setTimeout(r, 10));
      const fetches = t.rooms.length;
      await t.delivered[0]!.ack();
      await new Promise((r) => setTimeout(r, 30));
      assert.equal(t.rooms.length, wakeOnAnySettle ? fetches + 1 : fetches);
      t.core.cancelled = true;
      await t.loop.stop();
    }
  });
});
