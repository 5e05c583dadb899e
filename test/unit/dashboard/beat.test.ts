/**
 * The Beat view's data: the model reads celeriac beat's shared state (lease,
 * fencing token, last runs) through openBeatStore, like `celeriac beat
 * status`; GET /api/beat serves it to viewers only once logged in.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { openBeatStore } from '../../../src/client/beat-store.ts';
import { createDashboardModel } from '../../../src/dashboard/model/index.ts';
import { createBeatReader } from '../../../src/dashboard/model/beat.ts';
import type { BeatStore } from '../../../src/core/beat-store.ts';
import { memoryFixture } from '../../helpers/app-fixture.ts';
import { startHarness } from '../../helpers/dashboard-server.ts';

const dir = mkdtempSync(join(tmpdir(), 'dash-beat-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('dashboard model: beat', () => {
  it('shows the leader, its fencing token and each entry\'s last run (memory store, opened as openBeatStore opens it)', async () => {
    const f = memoryFixture({ taskDefaultQueue: 'q-dash-beat' });
    const { store } = await openBeatStore(f.app, { namespace: 'dash-beat', stateUrl: 'memory://' });
    const model = await createDashboardModel({ app: f.app, queues: ['q-dash-beat'], beat: { namespace: 'dash-beat', stateUrl: 'memory://' } });
    try {
      const empty = await model.beat!();
      assert.equal(empty.available, true, empty.detail);
      assert.equal(empty.leader, undefined);
      assert.deepEqual(empty.entries, []);
      const lease = await store.acquire('beat-1@host', 30_000);
      assert.ok(lease.leader);
      assert.deepEqual(await store.claim({ token: lease.token, entry: 'nightly', tick: 1_700_000_000_000, taskId: 'tid-1', skipped: 2 }), { state: 'claimed', published: false });
      await store.claim({ token: lease.token, entry: 'hourly', tick: 1_700_000_360_000, taskId: 'tid-2', skipped: 0 });
      await store.confirm('hourly', 1_700_000_360_000);
      const v = await model.beat!();
      assert.equal(v.namespace, 'dash-beat');
      assert.deepEqual(v.leader && { holder: v.leader.holder, token: v.leader.token }, { holder: 'beat-1@host', token: lease.token });
      assert.deepEqual(v.entries.map((e) => [e.name, e.lastRun, e.taskId, e.token, e.total, e.skipped, e.confirmed]), [
        ['hourly', 1_700_000_360, 'tid-2', lease.token, 1, 0, true],
        ['nightly', 1_700_000_000, 'tid-1', lease.token, 1, 2, false],
      ]);
    } finally {
      await model.close();
      await store.close();
      await f.close();
    }
  });

  it('reads a SQLite state store given as stateUrl', async () => {
    const url = `sqlite://${join(dir, 'beat.db')}`;
    const f = memoryFixture({});
    const { store } = await openBeatStore(f.app, { namespace: 'sq', stateUrl: url });
    const reader = createBeatReader(f.app, { namespace: 'sq', stateUrl: url });
    try {
      const lease = await store.acquire('beat-sq', 30_000);
      assert.ok(lease.leader);
      await store.claim({ token: lease.token, entry: 'e', tick: 5_000, taskId: 't', skipped: 0 });
      const v = await reader.read();
      assert.equal(v.available, true, v.detail);
      assert.match(v.where ?? '', /SQLite|sqlite/);
      assert.equal(v.leader?.holder, 'beat-sq');
      assert.deepEqual(v.entries.map((e) => [e.name, e.lastRun]), [['e', 5]]);
    } finally {
      await reader.close();
      await store.close();
      await f.close();
    }
  });

  it('says why when the store cannot be opened, and tries again later', async () => {
    let opens = 0;
    const reader = createBeatReader(undefined, {
      retryMs: 1000,
      open: async () => {
        opens++;
        throw new Error('celeriac beat needs a lock to elect one leader, and amqp://u:hunter2@rabbit:5672// has none');
      },
    });
    const a = await reader.read(10_000);
    assert.equal(a.available, false);
    assert.match(a.detail ?? '', /needs a lock/);
    assert.doesNotMatch(a.detail ?? '', /hunter2/, 'the URL password is redacted');
    await reader.read(10_500);
    assert.equal(opens, 1, 'no new attempt inside retryMs');
    await reader.read(11_500);
    assert.equal(opens, 2);
  });

  it('close() after an abort waits for the shutdown the abort began (the beat store is closed when it returns)', async () => {
    // `celeriac dashboard` aborts the model's signal, then awaits model.close() and closes the app: a close() that
    // returned at once left the store's connection open (and the process alive) behind a receiver still closing.
    const f = memoryFixture({ taskDefaultQueue: 'q-dash-beat-close' });
    let storeClosed = false;
    const store = { kind: 'test', read: async () => ({ lease: undefined, entries: [] }), close: async () => void (storeClosed = true) } as unknown as BeatStore;
    const abort = new AbortController();
    const model = await createDashboardModel({ app: f.app, queues: ['q-dash-beat-close'], signal: abort.signal, beat: { open: async () => ({ store, where: 'test' }) } });
    try {
      assert.equal((await model.beat!()).available, true);
      abort.abort();
      await model.close();
      assert.equal(storeClosed, true);
    } finally {
      await f.close();
    }
  });

  it('is absent with beat: false', async () => {
    const f = memoryFixture({});
    const model = await createDashboardModel({ app: f.app, beat: false });
    try {
      assert.equal(model.beat, undefined);
    } finally {
      await model.close();
      await f.close();
    }
  });
});

describe('GET /api/beat', () => {
  it('serves beat state to a viewer, and nothing without a session', async () => {
    const h = await startHarness();
    try {
      const anon = await h.server.app.inject({ method: 'GET', url: '/api/beat', headers: h.same() });
      assert.equal(anon.statusCode, 401);
      const { cookie } = await h.login('victor');
      const res = await h.server.app.inject({ method: 'GET', url: '/api/beat', headers: h.same({ cookie }) });
      assert.equal(res.statusCode, 200, res.body);
      const body = res.json() as { leader: { token: number }; entries: Array<{ name: string; total: number }> };
      assert.equal(body.leader.token, 7);
      assert.deepEqual(body.entries.map((e) => [e.name, e.total]), [['nightly <b>report</b>', 12]]);
    } finally {
      await h.close();
    }
  });
});
