/**
 * The replay store conformance suite: the nonce state machine (see
 * `src/security/replay-guard.ts`) every `ReplayStore` must implement — claim,
 * settle, release by the holder only, takeover of a named stale holder,
 * leases that run out unless refreshed, settled nonces that expire. Each
 * engine's conformance file calls `replayStoreConformance()` with a factory.
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import type { ReplayStore } from '../../src/core/replay-store.ts';
import { sleep } from '../helpers/services.ts';

export interface ReplayStoreConformanceTarget {
  /** Open a store; the suite closes it after each test. Stores opened by one target may share state. */
  open(): Promise<ReplayStore>;
  /** True when stores from `open` share state, as workers sharing a server or file do. */
  shared: boolean;
  /** Set up once before the suite (start servers), torn down after. */
  setup?(): Promise<void>;
  teardown?(): Promise<void>;
}

export function replayStoreConformance(name: string, target: ReplayStoreConformanceTarget): void {
  describe(`replay store conformance: ${name}`, () => {
    let store: ReplayStore;
    // Nonces unique to this run: a shared store keeps state between tests.
    const run = Math.random().toString(36).slice(2, 10);
    const n = (s: string): string => `${run}-${s}`;
    before(async () => target.setup?.());
    after(async () => target.teardown?.());
    beforeEach(async () => {
      store = await target.open();
    });
    afterEach(async () => {
      await store.close();
    });

    it('says whether it is shared', () => {
      assert.equal(store.shared, target.shared);
    });

    it('ABSENT → HELD; a second claim sees HELD with the holder; SETTLED after settle', async () => {
      assert.deepEqual(await store.claim(n('n1'), 'h:1:a', 5000), { state: 'claimed' });
      assert.deepEqual(await store.claim(n('n1'), 'h:2:b', 5000), { state: 'held', holder: 'h:1:a' });
      await store.settle(n('n1'), 5000);
      assert.deepEqual(await store.claim(n('n1'), 'h:2:b', 5000), { state: 'settled' });
    });

    it('release by the holder only; takeover of a named stale holder only', async () => {
      await store.claim(n('n2'), 'h:1:a', 5000);
      await store.release(n('n2'), 'h:2:b');
      assert.equal((await store.claim(n('n2'), 'h:2:b', 5000)).state, 'held', 'another consumer cannot release it');
      assert.equal((await store.claim(n('n2'), 'h:2:b', 5000, 'h:9:z')).state, 'held', 'only the named stale holder is replaced');
      assert.equal((await store.claim(n('n2'), 'h:2:b', 5000, 'h:1:a')).state, 'claimed');
      await store.release(n('n2'), 'h:2:b');
      assert.equal((await store.claim(n('n2'), 'h:3:c', 5000)).state, 'claimed', 'released → absent');
    });

    it('a lease runs out unless refreshed; settled state expires with its ttl', async () => {
      await store.claim(n('n3'), 'h:1:a', 300);
      await store.claim(n('n4'), 'h:1:a', 300);
      await sleep(150);
      await store.refresh([n('n3')], 'h:1:a', 600);
      await sleep(250);
      assert.equal((await store.claim(n('n3'), 'h:2:b', 5000)).state, 'held', 'refreshed lease still runs');
      assert.equal((await store.claim(n('n4'), 'h:2:b', 5000)).state, 'claimed', 'unrefreshed lease ran out');
      await store.settle(n('n5'), 200);
      await sleep(300);
      assert.equal((await store.claim(n('n5'), 'h:2:b', 5000)).state, 'claimed', 'settled nonces are forgotten after the signature expired');
    });

    it('of concurrent claims of one nonce, exactly one wins', async () => {
      const results = await Promise.all(['h:1:a', 'h:2:b', 'h:3:c', 'h:4:d'].map((h) => store.claim(n('n6'), h, 5000)));
      assert.equal(results.filter((r) => r.state === 'claimed').length, 1, JSON.stringify(results));
    });

    if (target.shared) {
      it('a second store on the same server or file sees the first one\'s holds and settles', async () => {
        const other = await target.open();
        try {
          await store.claim(n('n7'), 'h:1:a', 5000);
          assert.deepEqual(await other.claim(n('n7'), 'h:2:b', 5000), { state: 'held', holder: 'h:1:a' });
          await store.settle(n('n7'), 5000);
          assert.deepEqual(await other.claim(n('n7'), 'h:2:b', 5000), { state: 'settled' });
        } finally {
          await other.close();
        }
      });
    }
  });
}
