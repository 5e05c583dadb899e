/**
 * The event receiver wakes workers up as Celery's `celery events` does: once
 * bound it broadcasts the `heartbeat` control command, and every worker
 * that allows it sends a `worker-heartbeat` at once.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createEventReceiver } from '../../../src/client/events/receiver.ts';
import type { CeleryEvent } from '../../../src/client/events/types.ts';
import { memoryFixture } from '../../helpers/app-fixture.ts';
import { sleep, waitFor } from '../../helpers/services.ts';

/** Heartbeats of `node` seen by a receiver during `ms` after it is ready. */
async function heartbeats(f: ReturnType<typeof memoryFixture>, node: string, o: { wakeup?: boolean }, ms: number): Promise<number> {
  const ac = new AbortController();
  const receiver = createEventReceiver({ app: f.app, signal: ac.signal, bindingKeys: ['worker.#'], ...o });
  const seen: CeleryEvent[] = [];
  const reading = (async () => {
    for await (const ev of receiver) if (ev.type === 'worker-heartbeat' && ev.hostname === node) seen.push(ev);
  })();
  await receiver.ready;
  await waitFor(() => seen.length > 0, ms, 'a heartbeat').catch(() => undefined);
  ac.abort();
  await reading;
  return seen.length;
}

describe('event receiver wake-up', () => {
  it('broadcasts heartbeat once bound: a worker beating every 60 s sends one at once; not with wakeup: false', async () => {
    const f = memoryFixture({ workerControlAllow: ['@inspect', 'heartbeat'] });
    await f.startWorker({ nodeName: 'wake1@host', heartbeatIntervalS: 60 });
    await sleep(100);
    assert.equal(await heartbeats(f, 'wake1@host', { wakeup: false }, 1000), 0, 'no heartbeat within 1 s without the wake-up');
    assert.equal(await heartbeats(f, 'wake1@host', {}, 3000), 1, 'one heartbeat at once');
    await f.close();
  });

  it('a failed wake-up is reported through onError and the receiver still works', async () => {
    const f = memoryFixture();
    const errors: Error[] = [];
    const receiver = createEventReceiver({ app: f.app, control: { heartbeat: () => Promise.reject(new Error('no pidbox')) }, onError: (e) => errors.push(e) });
    await receiver.ready;
    assert.deepEqual(errors.map((e) => e.message), ['no pidbox']);
    await receiver.close();
    await f.close();
  });
});
