/**
 * Canvas end to end in one process (memory broker; memory and SQLite result
 * backends): chain, group, chord, link/link_error at send time, chain
 * failure marking the rest FAILURE, errbacks once each (old and new
 * signature), ChordError reaching the body and its errbacks, saved groups.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { chain, chord, chunks, group, map, restoreGroup, si, sig, starmap, GroupResult, type ErrbackRequest } from '../../../src/index.ts';
import { RemoteTaskError } from '../../../src/errors.ts';
import { JSON_SERIALIZER } from '../../../src/codec/serializers.ts';
import { newId } from '../../../src/protocol/ids.ts';
import { buildTaskMessage } from '../../../src/protocol/task-message.ts';
import type { SignatureDict } from '../../../src/protocol/types.ts';
import { createSqliteBackend } from '../../../src/transport/sqlite/backend.ts';
import { sqliteUrlForPath } from '../../../src/transport/sqlite/open.ts';
import { resolveSettings } from '../../../src/config/options.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { memoryFixture, type MemoryFixture } from '../../helpers/app-fixture.ts';

function define(f: MemoryFixture) {
  const seen: string[] = [];
  const newStyle: Array<{ id: string; message: string }> = [];
  const add = f.app.task('t.add', (x: number, y: number) => x + y);
  const tsum = f.app.task('t.tsum', (xs: number[]) => xs.reduce((a, b) => a + b, 0));
  const fail = f.app.task('t.fail', (..._args: unknown[]) => {
    throw new Error('boom');
  });
  const record = f.app.task('t.record', (taskId: string) => {
    seen.push(taskId);
    return taskId;
  });
  const onError = f.app.task('t.on_error', (request: ErrbackRequest, exc: Error, _tb: string | null) => {
    newStyle.push({ id: request.id, message: exc.message });
  });
  return { add, tsum, fail, record, onError, seen, newStyle };
}

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

for (const backendKind of ['memory', 'sqlite'] as const) {
  describe(`canvas on the ${backendKind} backend`, () => {
    let dir: string | undefined;
    const fixture = (): MemoryFixture => {
      if (backendKind === 'memory') return memoryFixture();
      dir = mkdtempSync(join(tmpdir(), 'celeriac-canvas-'));
      return memoryFixture({ backend: createSqliteBackend({ url: sqliteUrlForPath(join(dir, 'r.db')), logger: createLogger({ level: 'silent' } as never), settings: resolveSettings({}) }) });
    };
    const cleanup = async (f: MemoryFixture) => {
      await f.close();
      if (dir) rmSync(dir, { recursive: true, force: true });
    };

    it('a chain passes each result on; immutable steps ignore it; parent and root ids follow the chain', async () => {
      const f = fixture();
      const t = define(f);
      await f.startWorker();
      const r = await chain(sig(t.add, [1, 2]), sig(t.add, [3]), si(t.add, [10, 10]), sig(t.add, [4])).applyAsync(f.app);
      assert.equal(await r.get({ timeoutMs: 5000 }), 24);
      const meta = await r.meta();
      assert.ok(meta.parent_id, 'the last step names its parent');
      await cleanup(f);
    });

    it('a group returns its results in order; completedCount, join, save and restore', async () => {
      const f = fixture();
      const t = define(f);
      await f.startWorker();
      const g = await group(sig(t.add, [1, 1]), sig(t.add, [2, 2]), sig(t.add, [3, 3])).applyAsync(f.app);
      assert.deepEqual(await g.join({ timeoutMs: 5000 }), [2, 4, 6]);
      assert.equal(await g.completedCount(), 3);
      await g.save();
      const back = await restoreGroup(f.app, g.id);
      assert.ok(back instanceof GroupResult);
      assert.deepEqual(back.results.map((x) => x.id), g.results.map((x) => x.id));
      assert.deepEqual(await back.get({ timeoutMs: 1000 }), [2, 4, 6]);
      const m = await map(t.tsum, [[1, 2], [3]]).applyAsync(f.app);
      assert.deepEqual(await m.get({ timeoutMs: 5000 }), [3, 3]);
      const sm = await starmap(t.add, [[1, 2], [3, 4]]).applyAsync(f.app);
      assert.deepEqual(await sm.get({ timeoutMs: 5000 }), [3, 7]);
      const ck = await chunks(t.add, [[1, 2], [3, 4], [5, 6]], 2).applyAsync(f.app);
      assert.deepEqual(await ck.join({ timeoutMs: 5000 }), [[3, 7], [11]]);
      await cleanup(f);
    });

    it('a chord fires its body once with the header results in header order', async () => {
      const f = fixture();
      const t = define(f);
      await f.startWorker();
      const r = await chord([sig(t.add, [1, 1]), sig(t.add, [2, 2]), sig(t.add, [3, 3]), sig(t.add, [4, 4])], sig(t.tsum)).applyAsync(f.app);
      assert.equal(await r.get({ timeoutMs: 5000 }), 20);
      // A chain whose middle step is a group runs it as a chord (Celery's upgrade).
      const c = await chain(sig(t.add, [1, 1]), group(sig(t.add, [1]), sig(t.add, [2])), sig(t.tsum)).applyAsync(f.app);
      assert.equal(await c.get({ timeoutMs: 5000 }), 7);
      await cleanup(f);
    });

    it('a failed header task fails the body with ChordError and calls its errback once', async () => {
      const f = fixture();
      const t = define(f);
      await f.startWorker();
      const r = await chord([sig(t.add, [1, 1]), sig(t.fail, [])], sig(t.tsum)).linkError(sig(t.record)).applyAsync(f.app);
      const err = await r.get({ timeoutMs: 5000 }).then(
        () => undefined,
        (e: unknown) => e,
      );
      assert.ok(err instanceof RemoteTaskError);
      assert.equal(err.excType, 'ChordError');
      assert.match(String(err.excMessage[0]), /^Dependency [0-9a-f-]+ raised Error\('boom'\)$/);
      await waitFor(() => t.seen.length === 1);
      assert.deepEqual(t.seen, [r.id]);
      await cleanup(f);
    });

    it('an expired header task (REVOKED) fails the body with ChordError, as Celery does', async () => {
      const f = fixture();
      const t = define(f);
      await f.startWorker();
      const r = await chord([sig(t.add, [1, 1]), sig(t.add, [2, 2], {}, { expires: -1 })], sig(t.tsum)).applyAsync(f.app);
      await assert.rejects(r.get({ timeoutMs: 5000 }), (e: unknown) => e instanceof RemoteTaskError && e.excType === 'ChordError' && /raised TaskRevokedError\('expired'\)/.test(String(e.excMessage[0])));
      await cleanup(f);
    });

    it('a failed chain step marks the rest FAILURE and calls its errbacks once each (old and new signature)', async () => {
      const f = fixture();
      const t = define(f);
      await f.startWorker();
      const r = await chain(sig(t.add, [1, 2]), sig(t.fail), sig(t.add, [3]), sig(t.add, [4]))
        .linkError(sig(t.record))
        .linkError(sig(t.onError))
        .applyAsync(f.app);
      await assert.rejects(r.get({ timeoutMs: 5000 }), (e: unknown) => e instanceof RemoteTaskError && e.excType === 'Error');
      await waitFor(() => t.seen.length === 1 && t.newStyle.length === 1);
      // Give duplicates a chance to show up.
      await new Promise((res) => setTimeout(res, 200));
      assert.equal(t.seen.length, 1, 'old-style errback called once');
      assert.equal(t.newStyle.length, 1, 'new-style errback called once');
      assert.equal(t.newStyle[0]!.message.includes('boom'), true);
      assert.equal(t.seen[0], t.newStyle[0]!.id, 'both name the failed step');
      await cleanup(f);
    });

    it('a callback that cannot be built (an unknown canvas type) fails the task, once, instead of requeueing it', async () => {
      const f = fixture();
      define(f);
      await f.startWorker();
      const weird = { task: 'x', args: [], kwargs: {}, options: {}, subtask_type: 'weird', immutable: false } as SignatureDict;
      const message = buildTaskMessage({ task: 't.add', id: newId(), args: [1, 2], kwargs: {}, embed: { callbacks: [weird] } }, JSON_SERIALIZER);
      await f.broker.publish('celery', message);
      await assert.rejects(f.app.asyncResult(String(message.headers.id)).get({ timeoutMs: 5000 }), (e: unknown) => e instanceof RemoteTaskError && /canvas type "weird" is not supported/.test(String(e.excMessage[0])));
      assert.equal(await f.broker.queueLength('celery'), 0);
      await cleanup(f);
    });

    it('send-time link and linkError are honoured', async () => {
      const f = fixture();
      const t = define(f);
      await f.startWorker();
      await t.add.applyAsync([2, 3], undefined, { link: sig(t.record) });
      await waitFor(() => t.seen.includes('5' as never) || t.seen.some((s) => (s as unknown) === 5));
      const failed = await t.fail.applyAsync([], undefined, { linkError: [sig(t.record)] });
      await waitFor(() => t.seen.includes(failed.id));
      await cleanup(f);
    });
  });
}
