/**
 * The result backend conformance suite: one set of behaviours every
 * ResultBackend adapter must pass (store/get/getMany, watch, forget, the
 * never-overwrite-SUCCESS rule, expiry). Each adapter's test file calls
 * `backendConformance()` with a factory; every case runs twice, with plain
 * records and with sealed (encrypted) ones, whose state an adapter cannot
 * read from the bytes: it must go by the `state` it is handed.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { ResultBackend, StoredRecord } from '../../src/core/backend.ts';
import { generateResultKey, isEncryptedResult, parseResultKeyRing } from '../../src/codec/encryption.ts';
import { DEFAULT_DECODE_LIMITS } from '../../src/codec/limits.ts';
import { ClosedError } from '../../src/errors.ts';
import { newId } from '../../src/protocol/ids.ts';
import type { ResultMeta } from '../../src/protocol/result-meta.ts';
import { createResultSealer } from '../../src/security/result-sealer.ts';
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
  return { taskId, state, payload: Buffer.from(JSON.stringify(meta(taskId, state, result))) };
}

function meta(taskId: string, state: string, result: unknown): ResultMeta {
  return { status: state as ResultMeta['status'], result, traceback: null, children: [], date_done: null, task_id: taskId };
}

/** How the suite writes and reads records in one mode. */
interface RecordMode {
  name: string;
  record(taskId: string, state: string, result?: unknown): StoredRecord;
  /** The decoded meta of a stored payload (undefined for none). */
  read(payload: Buffer | undefined): { status: string; result: unknown } | undefined;
}

const plain: RecordMode = {
  name: 'plain records',
  record,
  read: (payload) => (payload ? (JSON.parse(payload.toString()) as { status: string; result: unknown }) : undefined),
};

/** Records sealed as the result store seals them with a key ring (AES-256-GCM, state visible only as associated data). */
function sealedMode(): RecordMode {
  const sealer = createResultSealer({ ring: parseResultKeyRing(generateResultKey('conformance')), limits: DEFAULT_DECODE_LIMITS });
  return {
    name: 'sealed records',
    record: (taskId, state, result = null) => {
      const m = meta(taskId, state, result);
      const payload = sealer.seal(Buffer.from(JSON.stringify(m)), m);
      assert.ok(isEncryptedResult(payload));
      return { taskId, state, payload };
    },
    read: (payload) => {
      if (!payload) return undefined;
      const outer = JSON.parse(payload.toString()) as { task_id: string };
      const inner = JSON.parse(sealer.open(payload, outer.task_id).toString()) as { status: string; result: unknown };
      return inner;
    },
  };
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

    for (const mode of [plain, sealedMode()]) describe(mode.name, () => cases(mode));

    function cases(mode: RecordMode): void {
      const rec = mode.record;
      const statusOf = (p: Buffer | undefined): string | undefined => mode.read(p)?.status;
      const resultOf = (p: Buffer | undefined): unknown => mode.read(p)?.result;

      it('stores and reads back a record byte for byte; a missing one is undefined', async () => {
        const b = await make();
        const t = id();
        const r = rec(t, 'SUCCESS', { text: 'héllo', n: 42 });
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
        await b.store([rec(ids[0]!, 'SUCCESS', 0), rec(ids[2]!, 'FAILURE', 2)]);
        const got = await b.getMany([ids[2]!, ids[1]!, ids[0]!]);
        assert.deepEqual(got.map(statusOf), ['FAILURE', undefined, 'SUCCESS']);
        assert.deepEqual(await b.getMany([]), []);
      });

      it('later states replace earlier ones until SUCCESS, which is never overwritten', async () => {
        const b = await make();
        const t = id();
        for (const s of ['PENDING', 'STARTED', 'RETRY', 'STARTED']) {
          await b.store([rec(t, s)]);
          assert.equal(statusOf(await b.get(t)), s);
        }
        await b.store([rec(t, 'SUCCESS', 'first')]);
        await b.store([rec(t, 'FAILURE', 'late duplicate')]);
        await b.store([rec(t, 'SUCCESS', 'second')]);
        assert.equal(statusOf(await b.get(t)), 'SUCCESS');
        assert.equal(resultOf(await b.get(t)), 'first');
        // Also within one batch, and for concurrent calls in one event-loop turn.
        const u = id();
        await b.store([rec(u, 'SUCCESS', 1), rec(u, 'FAILURE', 2)]);
        assert.equal(resultOf(await b.get(u)), 1);
        const v = id();
        await Promise.all([b.store([rec(v, 'STARTED')]), b.store([rec(v, 'SUCCESS', 'x')]), b.store([rec(v, 'RETRY')])]);
        assert.equal(statusOf(await b.get(v)), 'SUCCESS');
      });

      it('a stored SUCCESS is never overwritten by a later FAILURE, RETRY, STARTED, REVOKED or PENDING', async () => {
        const b = await make();
        // A redelivered duplicate may run on another worker: with a shared store, the late write comes from another instance.
        const late = target.shared ? await make() : b;
        for (const s of ['FAILURE', 'RETRY', 'STARTED', 'REVOKED', 'PENDING']) {
          const t = id();
          await b.store([rec(t, 'STARTED')]);
          await b.store([rec(t, 'SUCCESS', 'kept')]);
          await late.store([rec(t, s, 'late')]);
          assert.deepEqual(mode.read(await b.get(t)), mode.read(rec(t, 'SUCCESS', 'kept').payload), `${s} after SUCCESS`);
          assert.equal(statusOf(await late.get(t)), 'SUCCESS', `${s} after SUCCESS`);
          // In one batch, and from the batch the SUCCESS itself was in.
          const u = id();
          await late.store([rec(u, 'SUCCESS', 'kept'), rec(u, s, 'late')]);
          assert.equal(resultOf(await b.get(u)), 'kept', `${s} after SUCCESS in one batch`);
        }
      });

      it('watch hands each later write of the task to every watcher until unsubscribed', async () => {
        const b = await make();
        const t = id();
        const seenA: string[] = [];
        const seenB: string[] = [];
        const offA = await b.watch(t, (p) => seenA.push(statusOf(p)!));
        const offB = await b.watch(t, (p) => seenB.push(statusOf(p)!));
        await b.store([rec(id(), 'SUCCESS')]); // another task: not handed
        await b.store([rec(t, 'STARTED')]);
        await waitFor(() => seenA.length === 1 && seenB.length === 1, 5000, 'STARTED to both watchers');
        offA();
        await b.store([rec(t, 'SUCCESS', 7)]);
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
        await b.store([rec(t, 'SUCCESS', 1)]);
        const seen: unknown[] = [];
        const off = await b.watch(t, (p) => seen.push(resultOf(p)));
        await b.store([rec(t, 'FAILURE', 2)]);
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
          await writer.store([rec(t, 'SUCCESS', 'remote')]);
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
        await b.store([rec(t, 'SUCCESS')]);
        await b.forget(t);
        assert.equal(await b.get(t), undefined);
        await b.forget(id());
        // A forgotten SUCCESS no longer blocks a new record.
        await b.store([rec(t, 'FAILURE')]);
        assert.equal(statusOf(await b.get(t)), 'FAILURE');
      });

      it('records expire after expiresSeconds; an expired SUCCESS can be written again', async () => {
        const b = await make();
        const t = id();
        const keep = id();
        await b.store([rec(t, 'SUCCESS', 'old')], { expiresSeconds: 1 });
        await b.store([rec(keep, 'SUCCESS')]);
        assert.equal(statusOf(await b.get(t)), 'SUCCESS');
        await waitFor(async () => (await b.get(t)) === undefined, 4000, 'expiry');
        assert.deepEqual((await b.getMany([t, keep])).map(statusOf), [undefined, 'SUCCESS']);
        await b.store([rec(t, 'SUCCESS', 'new')], { expiresSeconds: 60 });
        assert.equal(resultOf(await b.get(t)), 'new');
      });

      it('stores and reads a thousand records at once', async () => {
        const b = await make();
        const ids = Array.from({ length: 1000 }, () => id());
        await b.store(ids.map((t, i) => rec(t, 'SUCCESS', i)));
        const got = await b.getMany(ids);
        assert.deepEqual(got.map(resultOf), ids.map((_, i) => i));
      });

      it('refuses to store once closed', async () => {
        const b = await target.create();
        await b.connect();
        await b.close();
        await assert.rejects(b.store([rec(id(), 'SUCCESS')]), ClosedError);
        await b.close(); // twice is harmless
      });
    }
  });
}
