import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { MalformedDelivery } from '../../../../src/core/broker.ts';
import { ConsumerCore, VirtualDelivery, type EnginePrimitives, type Held } from '../../../../src/transport/virtual/consumer-core.ts';
import type { WireMessage } from '../../../../src/protocol/types.ts';

const message: WireMessage = { headers: { id: 'x' }, properties: {}, contentType: 'application/json', contentEncoding: 'utf-8', body: Buffer.from('[]') };

/** An engine that records every primitive call. */
function recorder(over: Partial<EnginePrimitives<Held>> = {}) {
  const calls: string[] = [];
  const p: EnginePrimitives<Held> = {
    ackMany: (batch) => {
      calls.push(`ack ${batch.map((h) => h.tag).join(',')}`);
    },
    requeue: (h, where) => {
      calls.push(`requeue ${h.tag} ${where}`);
    },
    deadLetter: (h, reason) => {
      calls.push(`dead ${h.tag} ${reason}`);
    },
    returnAll: (held) => {
      calls.push(`return ${held.map((h) => h.tag).join(',')}`);
    },
    settled: () => {
      calls.push('settled');
    },
    ...over,
  };
  return { calls, p };
}

function coreWith(p: EnginePrimitives<Held>, extra: { prefetch?: number; batch?: boolean; onMalformed?: (m: MalformedDelivery) => void; onError?: (e: Error) => void } = {}) {
  return new ConsumerCore<Held>({
    consume: { prefetch: extra.prefetch ?? 10, onMalformed: extra.onMalformed, onError: extra.onError },
    primitives: p,
    ackBatch: extra.batch === false ? undefined : { max: 3, flush: 'tick' },
  });
}

function deliver(core: ConsumerCore<Held>, tag: string, queue = 'q'): VirtualDelivery {
  const d = new VirtualDelivery(core, tag, queue, message, false);
  core.hold(d);
  return d;
}

const tick = () => new Promise<void>((r) => process.nextTick(r));

describe('ConsumerCore', () => {
  it('counts held deliveries and computes the room in the window', () => {
    const { p } = recorder();
    const core = coreWith(p, { prefetch: 4 });
    assert.equal(core.room(200), 4);
    deliver(core, 'a');
    deliver(core, 'b');
    assert.equal(core.unsettled, 2);
    assert.equal(core.room(200), 2);
    assert.equal(core.room(1), 1);
    assert.equal(core.hasRoom(), true);
    deliver(core, 'c');
    deliver(core, 'd');
    assert.equal(core.hasRoom(), false);
    assert.equal(core.room(200), 0);
    core.prefetch = 0;
    assert.equal(core.room(200), 200);
    assert.equal(core.hasRoom(), true);
  });

  it('settles a delivery once: later ack, reject and dead-letter calls reach no primitive', async () => {
    const { calls, p } = recorder();
    const core = coreWith(p);
    const d = deliver(core, 'a');
    await d.reject(true);
    await d.ack();
    await d.reject(false);
    await d.deadLetter('late');
    await d.reject(true);
    assert.deepEqual(calls, ['requeue a tail', 'settled']);
    assert.equal(core.unsettled, 0);
    assert.equal(d.settled, true);
  });

  it('groups the acks of one turn into batches of at most `max`, one promise per batch, sent together', async () => {
    const { calls, p } = recorder();
    const core = coreWith(p);
    const ds = ['a', 'b', 'c', 'd', 'e'].map((t) => deliver(core, t));
    const promises = ds.map((d) => d.ack());
    assert.equal(core.unsettled, 0, 'an ack leaves the window at once');
    assert.equal(promises[0], promises[2]);
    assert.notEqual(promises[2], promises[3]);
    assert.equal(promises[3], promises[4]);
    assert.deepEqual(calls.filter((c) => c.startsWith('ack')), [], 'nothing sent before the turn ends');
    await Promise.all(promises);
    assert.deepEqual(calls.filter((c) => c.startsWith('ack')), ['ack a,b,c', 'ack d,e']);
    // The next turn starts a new batch.
    const f = deliver(core, 'f');
    await f.ack();
    assert.deepEqual(calls.filter((c) => c.startsWith('ack')), ['ack a,b,c', 'ack d,e', 'ack f']);
  });

  it('rejects only the acks of the batch whose call failed', async () => {
    let n = 0;
    const { p } = recorder({
      ackMany: () => {
        n++;
        return n === 2 ? Promise.reject(new Error('second batch refused')) : Promise.resolve(1);
      },
    });
    const core = coreWith(p);
    const ds = ['a', 'b', 'c', 'd'].map((t) => deliver(core, t));
    const results = await Promise.allSettled(ds.map((d) => d.ack()));
    assert.deepEqual(
      results.map((r) => r.status),
      ['fulfilled', 'fulfilled', 'fulfilled', 'rejected'],
    );
  });

  it('a synchronous throw of an ack batch rejects that batch', async () => {
    const { p } = recorder({
      ackMany: () => {
        throw new Error('database is locked');
      },
    });
    const core = coreWith(p);
    await assert.rejects(deliver(core, 'a').ack(), /database is locked/);
  });

  it('flushAcks sends pending acks at once and resolves when they were answered', async () => {
    let answered = false;
    const { p } = recorder({
      ackMany: () =>
        new Promise((r) =>
          setTimeout(() => {
            answered = true;
            r(1);
          }, 20),
        ),
    });
    const core = coreWith(p);
    const ack = deliver(core, 'a').ack();
    await core.flushAcks();
    assert.equal(answered, true);
    await ack;
    // The scheduled flush finds nothing left.
    await tick();
  });

  it('without batching, each ack is its own call', async () => {
    const calls: string[] = [];
    const { p } = recorder({
      ackMany: undefined,
      ack: (h) => {
        calls.push(`ack ${h.tag}`);
      },
    });
    const core = coreWith(p, { batch: false });
    deliver(core, 'a').ack();
    assert.deepEqual(calls, ['ack a']);
    await deliver(core, 'b').ack();
    assert.deepEqual(calls, ['ack a', 'ack b']);
  });

  it('reject(false) drops when the engine can, else acks', async () => {
    const dropped: string[] = [];
    const { calls, p } = recorder();
    const core = coreWith(p);
    await deliver(core, 'a').reject(false);
    assert.deepEqual(calls, ['settled', 'ack a']);
    const core2 = coreWith({ ...p, drop: (h) => void dropped.push(h.tag) });
    await deliver(core2, 'b').reject(false);
    assert.deepEqual(dropped, ['b']);
  });

  it('a failing requeue or dead-letter rejects its promise, sync throws included, and still counts as settled', async () => {
    const { p } = recorder({
      requeue: () => Promise.reject(new Error('connection lost')),
      deadLetter: () => {
        throw new Error('disk full');
      },
    });
    const core = coreWith(p);
    const a = deliver(core, 'a');
    await assert.rejects(a.reject(true), /connection lost/);
    await assert.rejects(deliver(core, 'b').deadLetter('poison'), /disk full/);
    assert.equal(core.unsettled, 0);
    await a.ack(); // harmless
  });

  it('dead-letters a malformed message, then reports it with its id', async () => {
    const { calls, p } = recorder();
    const seen: MalformedDelivery[] = [];
    const core = coreWith(p, { onMalformed: (m) => seen.push(m) });
    core.malformed({ tag: 'm', queue: 'q', settled: false }, 'malformed envelope: bad json', 'bad json', 'id-1');
    assert.deepEqual(calls, ['dead m malformed envelope: bad json', 'settled']);
    await tick();
    assert.deepEqual(seen, [{ queue: 'q', reason: 'bad json', id: 'id-1' }]);
    assert.equal(core.unsettled, 0);
  });

  it('a malformed message that cannot be dead-lettered goes to onError, not onMalformed', async () => {
    const { p } = recorder({ deadLetter: () => Promise.reject(new Error('no dlq')) });
    const seen: unknown[] = [];
    const errors: Error[] = [];
    const core = coreWith(p, { onMalformed: (m) => seen.push(m), onError: (e) => errors.push(e) });
    core.malformed({ tag: 'm', queue: 'q', settled: false }, 'malformed', 'x', undefined);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(seen, []);
    assert.equal(errors[0]?.message, 'no dlq');
  });

  it('copy-then-ack dead-lettering keeps the delivery held until the copy is confirmed', async () => {
    let confirm!: () => void;
    const acked: string[] = [];
    const core = new ConsumerCore<Held>({
      consume: { prefetch: 10 },
      primitives: {
        ack: (h) => void acked.push(h.tag),
        requeue: () => undefined,
        copyToDeadLetter: () => new Promise<void>((r) => (confirm = r)),
      },
    });
    const d = deliver(core, 'a');
    const done = d.deadLetter('poison');
    assert.equal(core.unsettled, 1);
    assert.equal(d.settled, false);
    confirm();
    await done;
    assert.deepEqual(acked, ['a']);
    assert.equal(core.unsettled, 0);
  });

  it('copy-then-ack: a failed copy leaves the delivery unsettled, so the caller can still give it back', async () => {
    const requeued: string[] = [];
    const core = new ConsumerCore<Held>({
      consume: { prefetch: 10 },
      primitives: {
        ack: () => undefined,
        requeue: (h) => void requeued.push(h.tag),
        copyToDeadLetter: () => Promise.reject(new Error('access refused')),
      },
    });
    const d = deliver(core, 'a');
    await assert.rejects(d.deadLetter('poison'), /access refused/);
    await d.reject(true);
    assert.deepEqual(requeued, ['a']);
  });

  it('returnAll hands every held delivery to the engine, marks them settled, and later settles do nothing', async () => {
    const { calls, p } = recorder();
    const core = coreWith(p);
    const a = deliver(core, 'a');
    deliver(core, 'b');
    const c = deliver(core, 'c');
    await c.ack();
    calls.length = 0;
    core.returnAll();
    assert.deepEqual(calls, ['return a,b']);
    assert.equal(core.unsettled, 0);
    await a.ack();
    await a.reject(true);
    assert.deepEqual(calls, ['return a,b']);
  });

  it('forget takes a delivery out of the window without settling it', async () => {
    const { calls, p } = recorder();
    const core = coreWith(p);
    const a = deliver(core, 'a');
    core.forget(a);
    assert.equal(core.unsettled, 0);
    await a.reject(true);
    assert.deepEqual(calls, ['requeue a tail', 'settled']);
  });

  it('stale comes from the engine', () => {
    const { p } = recorder({ isStale: (h) => h.tag === 'old' });
    const core = coreWith(p);
    assert.equal(deliver(core, 'old').stale, true);
    assert.equal(deliver(core, 'new').stale, false);
    const { p: p2 } = recorder();
    assert.equal(deliver(coreWith(p2), 'x').stale, undefined);
  });

  it('renews the leases of what is held on a timer, reports failures, and close stops it after acks and give-back', async () => {
    const renewed: number[] = [];
    const errors: Error[] = [];
    let fail = true;
    const { calls, p } = recorder({
      renew: (held) => {
        renewed.push(held.size);
        if (fail) {
          fail = false;
          throw new Error('renew refused');
        }
      },
    });
    const core = coreWith(p, { onError: (e) => errors.push(e) });
    deliver(core, 'a');
    const b = deliver(core, 'b');
    core.renewEvery(5);
    await new Promise((r) => setTimeout(r, 40));
    assert.ok(renewed.length >= 2);
    assert.equal(errors[0]?.message, 'renew refused');
    const ack = b.ack();
    calls.length = 0;
    await core.close();
    await ack;
    assert.deepEqual(calls, ['ack b', 'return a']);
    const n = renewed.length;
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(renewed.length, n, 'no renewal after close');
  });
});
