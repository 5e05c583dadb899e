/**
 * Both task stores against one set of cases: keyset pages (no gap, no
 * duplicate, newest first), every filter, totals, children, the memory
 * store's cap and the SQLite store's retention by age and count.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createMemoryStore } from '../../../src/dashboard/model/store-memory.ts';
import { createSqliteStore } from '../../../src/dashboard/model/store-sqlite.ts';
import type { StoredTask, TaskStore } from '../../../src/dashboard/model/store.ts';
import { ValidationError } from '../../../src/errors.ts';

const dir = mkdtempSync(join(tmpdir(), 'dash-store-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

const STATES = ['SUCCESS', 'FAILURE', 'STARTED', 'PENDING'];
const NAMES = ['app.add', 'app.mul', 'other.send_mail'];

function task(i: number, over: Partial<StoredTask> = {}): StoredTask {
  return {
    id: `t-${String(i).padStart(5, '0')}`,
    name: NAMES[i % 3]!,
    state: STATES[i % 4]!,
    worker: `w${i % 2}@h`,
    // Pairs share a timestamp, so ties are ordered by id.
    updated: 1_000_000 + Math.floor(i / 2),
    args: `(${i},)`,
    timeline: [{ type: 'task-received', timestamp: 1_000_000 + i, worker: `w${i % 2}@h`, fields: { retries: 0 } }],
    ...over,
  };
}

function fill(store: TaskStore, count: number): StoredTask[] {
  const all = Array.from({ length: count }, (_, i) => task(i));
  store.putMany(all.map((t) => ({ task: t })));
  return all;
}

function allPages(store: TaskStore, q: Omit<Parameters<TaskStore['query']>[0], 'limit' | 'cursor'>, limit: number): string[] {
  const ids: string[] = [];
  let cursor: string | undefined;
  for (let guard = 0; guard < 10_000; guard++) {
    const page = store.query({ ...q, limit, ...(cursor ? { cursor } : {}) });
    ids.push(...page.items.map((t) => t.id));
    if (!page.nextCursor) return ids;
    assert.equal(page.items.length, limit, 'only the last page is short');
    cursor = page.nextCursor;
  }
  throw new Error('pages never ended');
}

const expected = (all: StoredTask[], keep: (t: StoredTask) => boolean): string[] =>
  all.filter(keep).sort((a, b) => b.updated - a.updated || (a.id < b.id ? 1 : -1)).map((t) => t.id);

const kinds: Array<[string, () => TaskStore]> = [
  ['memory', () => createMemoryStore({ maxTasks: 100_000 })],
  ['sqlite', () => createSqliteStore({ path: join(dir, `s${n++}.db`) })],
];

for (const [kind, make] of kinds) {
  describe(`${kind} task store`, () => {
    it('pages newest first by keyset, with no gap and no duplicate, filtered or not', () => {
      const store = make();
      const all = fill(store, 503);
      assert.deepEqual(allPages(store, {}, 50), expected(all, () => true));
      assert.deepEqual(allPages(store, { state: 'FAILURE' }, 7), expected(all, (t) => t.state === 'FAILURE'));
      assert.deepEqual(allPages(store, { names: ['app.add'] }, 13), expected(all, (t) => t.name === 'app.add'));
      assert.deepEqual(allPages(store, { names: ['app.add', 'app.mul'] }, 9), expected(all, (t) => t.name !== 'other.send_mail'));
      assert.deepEqual(allPages(store, { nameContains: 'mul' }, 11), expected(all, (t) => t.name === 'app.mul'));
      assert.deepEqual(allPages(store, { worker: 'w1@h', state: 'FAILURE' }, 5), expected(all, (t) => t.worker === 'w1@h' && t.state === 'FAILURE'));
      assert.deepEqual(allPages(store, { from: 1_000_100, to: 1_000_120 }, 6), expected(all, (t) => t.updated >= 1_000_100 && t.updated <= 1_000_120));
      assert.deepEqual(allPages(store, { id: 't-00042' }, 5), ['t-00042']);
      assert.deepEqual(allPages(store, { id: 't-00042', state: 'PENDING' }, 5), [], 'the id and the other filters all apply');
      store.close();
    });

    it('counts matching rows (exact below 10,000)', () => {
      const store = make();
      const all = fill(store, 400);
      assert.equal(store.query({ limit: 1 }).total, 400);
      assert.equal(store.query({ limit: 1, state: 'SUCCESS' }).total, all.filter((t) => t.state === 'SUCCESS').length);
      assert.equal(store.query({ limit: 1, names: ['app.mul'] }).total, all.filter((t) => t.name === 'app.mul').length);
      const both = store.query({ limit: 1, names: ['app.mul'], worker: 'w0@h' });
      assert.equal(both.total, all.filter((t) => t.name === 'app.mul' && t.worker === 'w0@h').length);
      assert.equal(both.totalIsEstimate, false);
      assert.deepEqual(store.names(), ['app.add', 'app.mul', 'other.send_mail']);
      store.close();
    });

    it('updates a task in place: counts follow its state, it moves to the top, and its detail is kept', () => {
      const store = make();
      fill(store, 10);
      const t = store.get('t-00003')!;
      assert.equal(t.timeline.length, 1);
      assert.equal(t.args, '(3,)');
      const before = { name: t.name!, state: t.state };
      store.putMany([{ task: { ...t, state: 'SUCCESS', updated: 2_000_000, result: '42', traceback: 'tb', timeline: [...t.timeline, { type: 'task-succeeded', timestamp: 2, fields: {} }] }, before }]);
      assert.equal(store.size(), 10);
      const first = store.query({ limit: 1 }).items[0]!;
      assert.equal(first.id, 't-00003');
      assert.equal(first.result, '42');
      const again = store.get('t-00003')!;
      assert.equal(again.traceback, 'tb');
      assert.equal(again.timeline.length, 2);
      const counts = store.countsByNameState().get(t.name!)!;
      assert.equal([...store.countsByNameState().values()].reduce((a, m) => a + [...m.values()].reduce((x, y) => x + y, 0), 0), 10);
      assert.ok((counts.get('SUCCESS') ?? 0) >= 1);
      store.close();
    });

    it('lists children by parent id', () => {
      const store = make();
      store.putMany([
        { task: task(1, { id: 'root' }) },
        { task: task(2, { id: 'c1', parentId: 'root', rootId: 'root' }) },
        { task: task(3, { id: 'c2', parentId: 'root', rootId: 'root' }) },
        { task: task(4, { id: 'g1', parentId: 'c1', rootId: 'root' }) },
      ]);
      assert.deepEqual(store.children('root').sort(), ['c1', 'c2']);
      assert.deepEqual(store.children('c1'), ['g1']);
      assert.deepEqual(store.children('g1'), []);
      store.close();
    });

    it('refuses a cursor it did not make', () => {
      const store = make();
      fill(store, 5);
      if (kind === 'sqlite') assert.throws(() => store.query({ limit: 2, cursor: 'not-a-cursor' }), ValidationError);
      else assert.equal(store.query({ limit: 2, cursor: 'not-a-cursor' }).items.length, 2, 'the memory store starts over');
      store.close();
    });

    it('prunes tasks older than the retention, oldest first, in batches', () => {
      const store = make();
      fill(store, 300);
      let removed = 0;
      let rounds = 0;
      for (let r; (r = store.prune({ olderThan: 1_000_100, batch: 40 })) > 0; rounds++) {
        assert.ok(r <= 40, 'at most one batch per call');
        removed += r;
      }
      assert.equal(removed, 200, 'every task updated before the cut-off');
      assert.ok(rounds >= 5, 'in several batches');
      assert.equal(store.size(), 100);
      assert.equal(store.query({ limit: 1 }).total, 100);
      assert.ok(store.query({ limit: 500 }).items.every((t) => t.updated >= 1_000_100));
      store.close();
    });
  });
}

describe('store caps', () => {
  it('memory: evicts the least recently updated past maxTasks', () => {
    const store = createMemoryStore({ maxTasks: 100 });
    const all = fill(store, 250);
    assert.equal(store.size(), 100);
    assert.equal(store.get(all[0]!.id), undefined);
    assert.ok(store.get(all[249]!.id));
    // Updating an old survivor keeps it past the next evictions.
    const survivor = store.get(all[150]!.id)!;
    store.putMany([{ task: { ...survivor, updated: 9_999_999, timeline: [...survivor.timeline] }, before: { state: survivor.state, name: survivor.name! } }]);
    store.putMany(Array.from({ length: 99 }, (_, i) => ({ task: task(1000 + i, { updated: 9_999_999 }) })));
    assert.ok(store.get(all[150]!.id), 'recently updated, so kept');
    assert.equal(store.size(), 100);
    assert.equal([...store.countsByNameState().values()].reduce((a, m) => a + [...m.values()].reduce((x, y) => x + y, 0), 0), 100, 'counts follow evictions');
  });

  it('sqlite: prunes down to maxTasks in batches, and keeps the file 0600', () => {
    const path = join(dir, 'cap.db');
    const store = createSqliteStore({ path, maxTasks: 120 });
    fill(store, 300);
    while (store.prune({ batch: 50 }) > 0);
    assert.equal(store.size(), 120);
    assert.equal(store.query({ limit: 500 }).items.length, 120);
    assert.equal(store.query({ limit: 500 }).items.at(-1)!.id, 't-00180', 'the oldest were removed');
    assert.equal(statSync(path).mode & 0o777, 0o600);
    store.close();
    const reopened = createSqliteStore({ path, maxTasks: 120 });
    assert.equal(reopened.size(), 120, 'counts are read back at open');
    assert.equal(reopened.query({ limit: 1, state: 'SUCCESS' }).total, [...Array(300).keys()].filter((i) => i >= 180 && i % 4 === 0).length);
    reopened.close();
  });
});
