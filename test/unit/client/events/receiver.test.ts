/**
 * The receiver on the in-memory engine: events broadcast in the vectors'
 * format come out typed and in order (task.multi groups unpacked),
 * malformed ones are counted and skipped without ending the iteration,
 * and aborting ends it and closes the subscription.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { eventExchange, type Broker, type Subscription } from '../../../../src/core/broker.ts';
import { createEventReceiver } from '../../../../src/client/events/receiver.ts';
import type { CeleryEvent } from '../../../../src/client/events/types.ts';
import type { WireMessage } from '../../../../src/protocol/types.ts';
import { createMemoryBroker } from '../../../../src/transport/memory/broker.ts';
import { readVector } from '../../../helpers/fixtures.ts';
import { waitFor } from '../../../helpers/services.ts';

function wire(body: unknown, raw?: string): WireMessage {
  return { headers: { hostname: 'w@h' }, properties: { delivery_mode: 1, priority: 0 }, contentType: 'application/json', contentEncoding: 'utf-8', body: Buffer.from(raw ?? JSON.stringify(body)) };
}
const vector = (type: string): Record<string, unknown> => readVector<{ event: Record<string, unknown> }>(`events/${type}.json`).event;

async function collect(it: AsyncIterable<CeleryEvent>, into: CeleryEvent[]): Promise<void> {
  for await (const ev of it) into.push(ev);
}

describe('event receiver (memory engine)', () => {
  it('yields typed events in order, unpacks task.multi groups, skips and counts malformed ones', async () => {
    const broker = createMemoryBroker();
    await broker.connect();
    const ac = new AbortController();
    const reasons: string[] = [];
    const rx = createEventReceiver({ broker, signal: ac.signal, onMalformed: (i) => reasons.push(i.reason) });
    const got: CeleryEvent[] = [];
    const done = collect(rx, got);
    await rx.ready;
    const ex = eventExchange();
    await broker.broadcast(ex, 'worker.online', wire(vector('worker-online')));
    await broker.broadcast(ex, 'task.sent', wire(vector('task-sent')));
    await broker.broadcast(ex, 'task.multi', wire([vector('task-received'), vector('task-started'), { type: 'task-started' }, vector('task-succeeded')]));
    await broker.broadcast(ex, 'task.multi', wire(undefined, '{not json'));
    await broker.broadcast(ex, 'task.multi', wire(undefined, '{"type":"worker-online","hostname":"x","timestamp":1,"__proto__":{"a":1}}'));
    await broker.broadcast(ex, 'worker.heartbeat', wire({ ...vector('worker-heartbeat'), hostname: 7 }));
    await broker.broadcast(ex, 'worker.offline', wire(vector('worker-offline')));
    await waitFor(() => got.length >= 6, 5000, 'events');
    ac.abort();
    await done;
    assert.deepEqual(got.map((e) => e.type), ['worker-online', 'task-sent', 'task-received', 'task-started', 'task-succeeded', 'worker-offline']);
    assert.ok(got.every((e) => typeof e.local_received === 'number'));
    assert.equal(rx.stats.received, 6);
    assert.equal(rx.stats.malformed, 4);
    assert.equal(reasons.length, 4);
    await broker.close();
  });

  it('abort ends the iteration and closes the subscription; close() is idempotent', async () => {
    const inner = createMemoryBroker();
    await inner.connect();
    let closed = 0;
    // Count subscription closes through a thin wrapper.
    const broker: Broker = Object.create(inner) as Broker;
    broker.subscribe = async (...args: Parameters<Broker['subscribe']>): Promise<Subscription> => {
      const sub = await inner.subscribe(...args);
      return { queue: sub.queue, close: async () => { closed++; await sub.close(); } };
    };
    const ac = new AbortController();
    const rx = createEventReceiver({ broker, signal: ac.signal });
    const got: CeleryEvent[] = [];
    const done = collect(rx, got);
    await rx.ready;
    setTimeout(() => ac.abort(), 50);
    await done; // ends, no event needed
    assert.equal(closed, 1);
    await rx.close();
    assert.equal(closed, 1);
    // Nothing is delivered after the end.
    await inner.broadcast(eventExchange(), 'worker.online', wire(vector('worker-online')));
    assert.equal(got.length, 0);
    await inner.close();
  });

  it('an already-aborted signal ends at once; breaking out of the loop closes', async () => {
    const broker = createMemoryBroker();
    await broker.connect();
    const ac = new AbortController();
    ac.abort();
    const got: CeleryEvent[] = [];
    await collect(createEventReceiver({ broker, signal: ac.signal }), got);
    assert.equal(got.length, 0);

    const rx = createEventReceiver({ broker });
    await rx.ready;
    await broker.broadcast(eventExchange(), 'worker.online', wire(vector('worker-online')));
    for await (const ev of rx) {
      assert.equal(ev.type, 'worker-online');
      break;
    }
    await rx.close();
    await broker.close();
  });

  it('a slow reader: past maxBuffered the newest are dropped and counted', async () => {
    const broker = createMemoryBroker();
    await broker.connect();
    const rx = createEventReceiver({ broker, maxBuffered: 3 });
    await rx.ready;
    await broker.broadcast(eventExchange(), 'task.multi', wire(Array.from({ length: 5 }, (_, i) => ({ ...vector('task-started'), clock: i }))));
    await waitFor(() => rx.stats.received + rx.stats.dropped === 5, 5000, 'delivery');
    assert.equal(rx.stats.received, 3);
    assert.equal(rx.stats.dropped, 2);
    const clocks: unknown[] = [];
    for await (const ev of rx) {
      clocks.push(ev.clock);
      if (clocks.length === 3) break;
    }
    assert.deepEqual(clocks, [0, 1, 2]);
    await broker.close();
  });

  it('a subscription that cannot be made rejects ready and ends the iteration with the error', async () => {
    const broker = createMemoryBroker();
    broker.subscribe = () => Promise.reject(new Error('no route to broker'));
    const rx = createEventReceiver({ broker });
    await assert.rejects(rx.ready, /no route to broker/);
    await assert.rejects(async () => {
      for await (const _ of rx) assert.fail('no event expected');
    }, /no route to broker/);
    await rx.close();
  });

  it('binding keys select what is received', async () => {
    const broker = createMemoryBroker();
    await broker.connect();
    const ac = new AbortController();
    const rx = createEventReceiver({ broker, signal: ac.signal, bindingKeys: ['worker.#'] });
    const got: CeleryEvent[] = [];
    const done = collect(rx, got);
    await rx.ready;
    await broker.broadcast(eventExchange(), 'task.multi', wire([vector('task-started')]));
    await broker.broadcast(eventExchange(), 'worker.heartbeat', wire(vector('worker-heartbeat')));
    await waitFor(() => got.length >= 1, 5000, 'heartbeat');
    ac.abort();
    await done;
    assert.deepEqual(got.map((e) => e.type), ['worker-heartbeat']);
    await broker.close();
  });
});
