import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_COALESCED, PushCoalescer } from '../../../../src/transport/redis/push-coalescer.ts';

function recorder(fail?: (key: string) => Error | undefined) {
  const calls: Array<{ key: string; values: string[] }> = [];
  const send = async (key: string, values: string[]): Promise<number> => {
    calls.push({ key, values: [...values] });
    const err = fail?.(key);
    if (err) throw err;
    return values.length;
  };
  return { calls, send };
}

describe('PushCoalescer', () => {
  it('sends the pushes of one turn as one batch per key, in call order', async () => {
    const r = recorder();
    const c = new PushCoalescer(r.send);
    const done = [c.push('a', ['1']), c.push('b', ['x']), c.push('a', ['2', '3']), c.push('a', ['4'])];
    assert.equal(r.calls.length, 0, 'nothing is sent before the current turn ends');
    await Promise.all(done);
    assert.deepEqual(r.calls, [
      { key: 'a', values: ['1', '2', '3', '4'] },
      { key: 'b', values: ['x'] },
    ]);
  });

  it('collects sends that reach it through chains of awaits in the same turn', async () => {
    const r = recorder();
    const c = new PushCoalescer(r.send);
    const lane = async (i: number): Promise<void> => {
      await Promise.resolve();
      await Promise.resolve();
      await c.push('q', [String(i)]);
    };
    await Promise.all([lane(1), lane(2), lane(3)]);
    assert.deepEqual(r.calls, [{ key: 'q', values: ['1', '2', '3'] }]);
  });

  it('splits at the size limit and keeps the order across batches', async () => {
    const r = recorder();
    const c = new PushCoalescer(r.send, 3);
    await Promise.all([c.push('q', ['1', '2']), c.push('q', ['3', '4']), c.push('q', ['5'])]);
    assert.deepEqual(r.calls.map((x) => x.values), [['1', '2'], ['3', '4', '5']]);
  });

  it('sends the first pieces of a large burst while the burst is still being built', async () => {
    const r = recorder();
    const c = new PushCoalescer(r.send);
    const n = 2 * MAX_COALESCED + 10;
    const done: Array<Promise<void>> = [];
    for (let i = 0; i < n; i++) done.push(c.push('q', [String(i)]));
    assert.equal(r.calls.length, 2, 'two full pieces went out before the turn ended');
    await Promise.all(done);
    assert.deepEqual(r.calls.map((x) => x.values.length), [MAX_COALESCED, MAX_COALESCED, 10]);
    assert.deepEqual(r.calls.flatMap((x) => x.values), Array.from({ length: n }, (_, i) => String(i)));
    // One call with many values (a bulk send) stays one push.
    const bulk = recorder();
    await new PushCoalescer(bulk.send).push('q', Array.from({ length: 500 }, (_, i) => String(i)));
    assert.deepEqual(bulk.calls.map((x) => x.values.length), [500]);
  });

  it('rejects every send of a failed batch, and only those', async () => {
    const r = recorder((key) => (key === 'bad' ? new Error('READONLY') : undefined));
    const c = new PushCoalescer(r.send);
    const results = await Promise.allSettled([c.push('bad', ['1']), c.push('good', ['2']), c.push('bad', ['3'])]);
    assert.deepEqual(results.map((x) => x.status), ['rejected', 'fulfilled', 'rejected']);
    assert.match(String((results[0] as PromiseRejectedResult).reason), /READONLY/);
  });

  it('rejects when the sender throws synchronously', async () => {
    const c = new PushCoalescer(() => {
      throw new Error('closed');
    });
    await assert.rejects(c.push('q', ['1']), /closed/);
  });

  it('idle() sends what is queued at once and waits for every answer', async () => {
    let answered = 0;
    const c = new PushCoalescer(async (_key, values) => {
      await new Promise((r) => setTimeout(r, 20));
      answered += values.length;
    });
    void c.push('q', ['1']);
    void c.push('r', ['2', '3']);
    await c.idle();
    assert.equal(answered, 3);
  });
});
