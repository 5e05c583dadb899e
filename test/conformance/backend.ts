/**
 * The result backend conformance suite: one set of behaviours every
 * ResultBackend adapter must pass (store/get/getMany, watch, forget, the
 * never-overwrite-SUCCESS rule, expiry). Each adapter's test file calls
 * `backendConformance()` with a factory.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { ResultBackend, StoredRecord } from '../../src/core/backend.ts';
import { ClosedError } from '../../src/errors.ts';
import { newId } from '../../src/protocol/ids.ts';
import { sleep, waitFor } from '../helpers/services.ts';

export interface BackendConformanceTarget {
  /** Create a fresh backend (connected lazily); the suite closes it. */
  create(): Promise<ResultBackend>;
  /** True when instances from `create` share one store, as processes sharing a server do. */
  shared: boolean;
  /** Set up once before the suite (start servers), torn down after. */
  setup?(): Promise<void>;
  teardown?(): Promise<void>;
}

/** A record as the result layer encodes it: JSON with the status first (what Redis's SUCCESS check reads). */
export function record(taskId: string, state: string, result: unknown = null): StoredRecord {
  return { taskId, state, payload: Buffer.from(JSON.stringify({ status: state, result, traceback: null, children: [], date_done: null, task_id: taskId })) };
}

function statusOf(payload: Buffer | undefined): string | undefined {
  return payload ? (JSON.parse(payload.toString()) as { status: string }).status : undefined;
}

function resultOf(payload: Buffer | undefined): unknown {
  return payload ? (JSON.parse(payload.toString()) as { result: unknown }).result : undefined;
}

export function backendConformance(name: string, target: BackendConformanceTarget): void {
  describe(`backend conformance: ${name}`, () => {
    const open: ResultBackend[] = [];
    const make = async (): Promise<ResultBackend> => {
      const b = await target.create();
      open.push(b);
      await b.connect();
      return b;
    };
    const id = (): string => `bc-${newId()}`;

    before(async () => target.setup?.());
    after(async () => {
      await Promise.allSettled(open.map((b) => b.close()));
      await target.teardown?.();
    });

    it('stores and reads back a record byte for byte; a missing one is undefined', async () => {
      const b = await make();
      const t = id();
      const r = record(t, 'SUCCESS', { text: 'héllo', n: 42 });
      await b.store([r]);
      assert.deepEqual(await b.get(t), r.payload);
      assert.equal(await b.get(id()), undefined);
      // Binary payloads (msgpack, encrypted records) survive intact.
      const bin = id();
      const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
      await b.store([{ taskId: bin, state: 'FAILURE', payload: bytes }]);
      assert.deepEqual(await b.get(bin), bytes);
    });

    it('getMany returns payloads in order, undefined where missing', async () => {
      const b = await make();
      const ids = [id(), id(), id()];
      await b.store([record(ids[0]!, 'SUCCESS', 0), record(ids[2]!, 'FAILURE', 2)]);
      const got = await b.getMany([ids[2]!, ids[1]!, ids[0]!]);
      assert.deepEqual(got.map(statusOf), ['FAILURE', undefined, 'SUCCESS']);
      assert.deepEqual(await b.getMany([]), []);
    });

    it('later states replace earlier ones until SUCCESS, which is never overwritten', async () => {
      const b = await make();
      const t = id();
      for (const s of ['PENDING', 'STARTED', 'RETRY', 'STARTED']) {
        await b.store([record(t, s)]);
        assert.equal(statusOf(await b.get(t)), s);
      }
      await b.store([record(t, 'SUCCESS', 'first')]);
      await b.store([record(t, 'FAILURE', 'late duplicate')]);
      await b.store([record(t, 'SUCCESS', 'second')]);
      assert.equal(statusOf(await b.get(t)), 'SUCCESS');
      assert.equal(resultOf(await b.get(t)), 'first');
      // Also within one batch, and for concurrent calls in one event-loop turn.
      const u = id();
      await b.store([record(u, 'SUCCESS', 1), record(u, 'FAILURE', 2)]);
      assert.equal(resultOf(await b.get(u)), 1);
      const v = id();
      await Promise.all([b.store([record(v, 'STARTED')]), b.store([record(v, 'SUCCESS', 'x')]), b.store([record(v, 'RETRY')])]);
      assert.equal(statusOf(await b.get(v)), 'SUCCESS');
    });

    it('watch hands each later write of the task to every watcher until unsubscribed', async () => {
      const b = await make();
      const t = id();
      const seenA: string[] = [];
      const seenB: string[] = [];
      const offA = await b.watch(t, (p) => seenA.push(statusOf(p)!));
      const offB = await b.watch(t, (p) => seenB.push(statusOf(p)!));
      await b.store([record(id(), 'SUCCESS')]); // another task: not handed
      await b.store([record(t, 'STARTED')]);
      await waitFor(() => seenA.length === 1 && seenB.length === 1, 5000, 'STARTED to both watchers');
      offA();
      await b.store([record(t, 'SUCCESS', 7)]);
      await waitFor(() => seenB.length === 2, 5000, 'SUCCESS to the remaining watcher');
      await sleep(100);
      assert.deepEqual(seenA, ['STARTED']);
      assert.deepEqual(seenB, ['STARTED', 'SUCCESS']);
      offB();
      offB(); // twice is harmless
    });

    it('does not hand a refused overwrite of SUCCESS to watchers', async () => {
      const b = await make();
      const t = id();
      await b.store([record(t, 'SUCCESS', 1)]);
      const seen: unknown[] = [];
      const off = await b.watch(t, (p) => seen.push(resultOf(p)));
      await b.store([record(t, 'FAILURE', 2)]);
      await sleep(300);
      assert.deepEqual(seen, []);
      off();
    });

    if (target.shared) {
      it('a watcher hears a write made through another instance (another process)', async () => {
        const watcher = await make();
        const writer = await make();
        const t = id();
        const seen: Buffer[] = [];
        const off = await watcher.watch(t, (p) => seen.push(p));
        const started = performance.now();
        await writer.store([record(t, 'SUCCESS', 'remote')]);
        await waitFor(() => seen.length === 1, 5000, 'remote write');
        const ms = performance.now() - started;
        assert.equal(resultOf(seen[0]), 'remote');
        assert.ok(ms < 1000, `woke after ${ms.toFixed(1)} ms`);
        assert.equal(resultOf(await watcher.get(t)), 'remote');
        off();
      });
    }

    it('forget deletes the record (and forgetting a missing one is fine)', async () => {
      const b = await make();
      const t = id();
      await b.store([record(t, 'SUCCESS')]);
      await b.forget(t);
      assert.equal(await b.get(t), undefined);
      await b.forget(id());
      // A forgotten SUCCESS no longer blocks a new record.
      await b.store([record(t, 'FAILURE')]);
      assert.equal(statusOf(await b.get(t)), 'FAILURE');
    });

    it('records expire after expiresSeconds; an expired SUCCESS can be written again', async () => {
      const b = await make();
      const t = id();
      const keep = id();
      await b.store([record(t, 'SUCCESS', 'old')], { expiresSeconds: 1 });
      await b.store([record(keep, 'SUCCESS')]);
      assert.equal(statusOf(await b.get(t)), 'SUCCESS');
      await waitFor(async () => (await b.get(t)) === undefined, 4000, 'expiry');
      assert.deepEqual((await b.getMany([t, keep])).map(statusOf), [undefined, 'SUCCESS']);
      await b.store([record(t, 'SUCCESS', 'new')], { expiresSeconds: 60 });
      assert.equal(resultOf(await b.get(t)), 'new');
    });

    it('stores and reads a thousand records at once', async () => {
      const b = await make();
      const ids = Array.from({ length: 1000 }, () => id());
      await b.store(ids.map((t, i) => record(t, 'SUCCESS', i)));
      const got = await b.getMany(ids);
      assert.deepEqual(got.map(resultOf), ids.map((_, i) => i));
    });

    it('refuses to store once closed', async () => {
      const b = await target.create();
      await b.connect();
      await b.close();
      await assert.rejects(b.store([record(id(), 'SUCCESS')]), ClosedError);
      await b.close(); // twice is harmless
    });
  });
}
