/**
 * `currentTask().replace(sig)` and `currentTask().addToChord(sig)` end to
 * end in one process (memory broker; memory, SQLite and Redis result
 * backends, Redis being the shared one on 127.0.0.1:6379 with fresh ids):
 * the caller's result resolves to the replacement's, the replaced task's
 * place in a chain or chord and its links move to the replacement, a
 * group is collected, a chord waits for added parts, and bad use fails the
 * task with a typed error that says what to do.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { chain, chord, currentTask, fromDict, group, si, sig, type ErrbackRequest } from '../../../src/index.ts';
import type { SignatureDict } from '../../../src/protocol/types.ts';
import { RemoteTaskError } from '../../../src/errors.ts';
import type { ResultBackend } from '../../../src/core/backend.ts';
import { resolveSettings } from '../../../src/config/options.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { createRedisBackend } from '../../../src/transport/redis/backend.ts';
import { createSqliteBackend } from '../../../src/transport/sqlite/backend.ts';
import { sqliteUrlForPath } from '../../../src/transport/sqlite/open.ts';
import { memoryFixture, type MemoryFixture } from '../../helpers/app-fixture.ts';
import { requireService, waitFor } from '../../helpers/services.ts';
import { redisAnswers } from '../../helpers/redis-server.ts';

const REDIS_URL = 'redis://127.0.0.1:6379/0';
const T = 8000;
const logger = createLogger({ level: 'silent' } as never);

const redisUp = (): Promise<boolean> => redisAnswers(REDIS_URL);

function define(f: MemoryFixture) {
  const seen: string[] = [];
  const errbacks: Array<{ id: string; message: string }> = [];
  const add = f.app.task('r.add', (x: number, y: number) => x + y);
  const mul = f.app.task('r.mul', (x: number, y: number) => x * y);
  const tsum = f.app.task('r.tsum', (xs: number[]) => xs.reduce((a, b) => a + b, 0));
  const fail = f.app.task('r.fail', (..._args: unknown[]) => {
    throw new Error('replacement failed');
  });
  const record = f.app.task('r.record', (value: string) => {
    seen.push(String(value));
    return value;
  });
  const onError = f.app.task('r.on_error', (request: ErrbackRequest, exc: Error, _tb: string | null) => {
    errbacks.push({ id: request.id, message: exc.message });
  });
  // Replaces itself with `add(x, 100)`, or with the workflow its `how` names.
  const replacer = f.app.task('r.replacer', (x: number, how = 'task') => {
    const ctx = currentTask();
    if (how === 'task') return ctx.replace(sig(add, [x, 100]));
    if (how === 'chain') return ctx.replace(chain(sig(mul, [x, 2]), sig(add, [1])));
    if (how === 'group') return ctx.replace(group(sig(add, [x, 1]), sig(add, [x, 2])));
    if (how === 'chord') return ctx.replace(chord([sig(add, [x, 1]), sig(add, [x, 2])], sig(tsum)));
    if (how === 'fail') return ctx.replace(sig(fail));
    if (how === 'dict') return ctx.replace(sig(add, [x, 1000]).toDict());
    if (how === 'number') return ctx.replace(42 as never);
    if (how === 'in-chord') return ctx.replace({ ...sig(add, [x, 1]).toDict(), options: { chord: sig(tsum).toDict() as never } });
    throw new Error(`unknown how ${how}`);
  }, { params: ['x', 'how'] });
  // A chord header part that adds `extra` parts add(n, n) to its chord, and returns x.
  const adder = f.app.task('r.adder', async (x: number, extra: number[] = []) => {
    const ctx = currentTask();
    for (const n of extra) await ctx.addToChord(sig(add, [n, n]));
    return x;
  }, { params: ['x', 'extra'] });
  const lonelyAdder = f.app.task('r.lonely_adder', async () => {
    await currentTask().addToChord(sig(add, [1, 1]));
    return 'unreachable';
  });
  return { add, mul, tsum, fail, record, onError, replacer, adder, lonelyAdder, seen, errbacks };
}

const targets: Array<{ name: string; ok: () => Promise<boolean>; backend: (dir: string) => ResultBackend | undefined }> = [
  { name: 'memory', ok: async () => true, backend: () => undefined },
  { name: 'sqlite', ok: async () => true, backend: (dir) => createSqliteBackend({ url: sqliteUrlForPath(join(dir, 'r.db')), logger, settings: resolveSettings({}) }) },
  { name: 'redis', ok: redisUp, backend: () => createRedisBackend({ url: REDIS_URL, logger, settings: resolveSettings({}) }) },
];

for (const target of targets) {
  describe(`replace and addToChord on the ${target.name} backend`, () => {
    async function setup(t: TestContext): Promise<{ f: MemoryFixture; d: ReturnType<typeof define>; done(): Promise<void> } | undefined> {
      if (!requireService(t, await target.ok(), 'redis on 127.0.0.1:6379')) return undefined;
      const dir = mkdtempSync(join(tmpdir(), 'celeriac-replace-'));
      const backend = target.backend(dir);
      const f = memoryFixture(backend ? { backend } : {});
      const d = define(f);
      await f.startWorker();
      return {
        f,
        d,
        async done() {
          await f.close();
          rmSync(dir, { recursive: true, force: true });
        },
      };
    }

    it("the caller's result is the replacement's; the replacement has the task's id, its parent is the task", async (t) => {
      const s = await setup(t);
      if (!s) return;
      const { f, d } = s;
      const r = await d.replacer.delay(5);
      assert.equal(await r.get({ timeoutMs: T }), 105);
      const meta = await r.meta();
      assert.equal(meta.status, 'SUCCESS');
      assert.equal(meta.parent_id, r.id, 'the replacement was sent from inside the replaced task');
      // A signature dict works as well as a Signature.
      assert.equal(await (await d.replacer.applyAsync([5, 'dict'])).get({ timeoutMs: T }), 1005);
      assert.ok(f.logs.some((l) => l.msg === `task r.replacer[${r.id}] replaced by r.add`), 'the replacement is logged');
      await s.done();
    });

    it('replaced by a chain, a group (its list of results) and a chord', async (t) => {
      const s = await setup(t);
      if (!s) return;
      const { d } = s;
      assert.equal(await (await d.replacer.applyAsync([5, 'chain'])).get({ timeoutMs: T }), 11);
      assert.deepEqual(await (await d.replacer.applyAsync([5, 'group'])).get({ timeoutMs: T }), [6, 7]);
      assert.equal(await (await d.replacer.applyAsync([5, 'chord'])).get({ timeoutMs: T }), 13);
      await s.done();
    });

    it("in a chain: the rest of the chain follows the replacement, with the chain's ids", async (t) => {
      const s = await setup(t);
      if (!s) return;
      const { d } = s;
      const steps = [sig(d.add, [1, 2]), sig(d.replacer, [], { how: 'chain' }), sig(d.add, [10])];
      const c = chain(...steps.map((st, i) => st.set({ taskId: `00000000-0000-4000-8000-${String(Date.now()).slice(-9)}00${i}` })));
      const r = await c.applyAsync(s.f.app);
      // (1 + 2) * 2 + 1 = 7, then + 10.
      assert.equal(await r.get({ timeoutMs: T }), 17);
      assert.equal(r.id, c.tasks[2]!.options.task_id, 'the chain result keeps its id');
      assert.equal(await s.f.app.asyncResult(c.tasks[1]!.options.task_id as string).get({ timeoutMs: T }), 7, "the replaced step's id holds the replacement's result");
      // Replaced by a group in the middle of a chain: the next step gets the list.
      const g = await chain(sig(d.replacer, [3, 'group']), sig(d.tsum)).applyAsync(s.f.app);
      assert.equal(await g.get({ timeoutMs: T }), 9);
      await s.done();
    });

    it("in a chord header: the replacement takes the task's part", async (t) => {
      const s = await setup(t);
      if (!s) return;
      const { d } = s;
      const r = await chord([sig(d.add, [1, 1]), sig(d.replacer, [5]), sig(d.replacer, [1, 'chain'])], sig(d.tsum)).applyAsync(s.f.app);
      assert.equal(await r.get({ timeoutMs: T }), 2 + 105 + 3);
      const g = await chord([sig(d.add, [1, 1]), sig(d.replacer, [5, 'group'])], sig(d.record)).applyAsync(s.f.app);
      await g.get({ timeoutMs: T });
      assert.deepEqual(d.seen, ['2,6,7'], 'a group replacing a part gives the body its list as that part');
      await s.done();
    });

    it("the task's callbacks and errbacks move to the replacement, and run once", async (t) => {
      const s = await setup(t);
      if (!s) return;
      const { d } = s;
      const ok = await d.replacer.applyAsync([5, 'chain'], undefined, { link: sig(d.record) });
      assert.equal(await ok.get({ timeoutMs: T }), 11);
      await waitFor(() => d.seen.length === 1, T, 'callback');
      assert.deepEqual(d.seen, ['11'], "the callback got the replacement's result");
      const bad = await d.replacer.applyAsync([5, 'fail'], undefined, { linkError: [sig(d.record), sig(d.onError)] });
      await assert.rejects(bad.get({ timeoutMs: T }), (e: unknown) => e instanceof RemoteTaskError && e.excType === 'Error' && /replacement failed/.test(String(e.excMessage[0])));
      await waitFor(() => d.seen.length === 2 && d.errbacks.length === 1, T, 'errbacks');
      await new Promise((res) => setTimeout(res, 200));
      assert.deepEqual(d.seen, ['11', bad.id], 'old-style errback once, with the id of the failed replacement (the task id)');
      assert.deepEqual(d.errbacks.map((e) => e.id), [bad.id]);
      await s.done();
    });

    it('bad use fails the task with a typed error that says what to do', async (t) => {
      const s = await setup(t);
      if (!s) return;
      const { d } = s;
      const notSig = await d.replacer.applyAsync([1, 'number']);
      await assert.rejects(notSig.get({ timeoutMs: T }), (e: unknown) => e instanceof RemoteTaskError && e.excType === 'ValidationError' && /replace\(\) takes a signature, got a number — pass sig\(task, args\)/.test(String(e.excMessage[0])));
      const inChord = await d.replacer.applyAsync([1, 'in-chord']);
      await assert.rejects(inChord.get({ timeoutMs: T }), (e: unknown) => e instanceof RemoteTaskError && /must not be part of a chord — pass it without its chord/.test(String(e.excMessage[0])));
      const lonely = await d.lonelyAdder.delay();
      await assert.rejects(lonely.get({ timeoutMs: T }), (e: unknown) => e instanceof RemoteTaskError && /addToChord\(\): task r\.lonely_adder\[.*\] is not part of a chord header — call it from a task sent in a chord header/.test(String(e.excMessage[0])));
      assert.throws(() => currentTask().replace(sig(d.add, [1, 2])), (e: unknown) => (e as { code?: string }).code === 'ERR_NO_TASK' && /call it from inside a task function/.test((e as Error).message));
      await s.done();
    });

    it('addToChord: the body waits for the added parts and gets their results in the list', async (t) => {
      const s = await setup(t);
      if (!s) return;
      const { d } = s;
      const r = await chord([sig(d.adder, [1, [10, 20]]), sig(d.add, [2, 2])], sig(d.tsum)).applyAsync(s.f.app);
      assert.equal(await r.get({ timeoutMs: T }), 1 + 20 + 40 + 4);
      // The added parts share the adder's index, so the body's list keeps the header's order around them.
      const order = await chord([sig(d.adder, [1, [5]]), sig(d.add, [2, 2])], sig(d.record)).applyAsync(s.f.app);
      await order.get({ timeoutMs: T });
      const list = d.seen.at(-1)!.split(',').map(Number);
      assert.deepEqual(list.slice(-1), [4], 'the header part after the adder is still last');
      assert.deepEqual([...list.slice(0, 2)].sort((a, b) => a - b), [1, 10]);
      await s.done();
    });

    it('addToChord lazy: counted but not sent, so the body waits until the caller sends it', async (t) => {
      const s = await setup(t);
      if (!s) return;
      const { d, f } = s;
      let pending: SignatureDict | undefined;
      const lazyAdder = f.app.task('r.lazy_adder', async () => {
        pending = (await currentTask().addToChord(si(d.add, [7, 7]), { lazy: true })).signature;
        return 1;
      });
      const r = await chord([sig(lazyAdder), sig(d.add, [1, 1])], sig(d.tsum)).applyAsync(f.app);
      await waitFor(() => pending !== undefined, T, 'the lazy part');
      await new Promise((res) => setTimeout(res, 300));
      assert.equal((await r.meta()).status, 'PENDING', 'the body waits for the lazy part');
      await fromDict(pending!).applyAsync(f.app);
      assert.equal(await r.get({ timeoutMs: T }), 1 + 2 + 14);
      await s.done();
    });
  });
}
