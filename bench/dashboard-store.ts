/**
 * The dashboard's task store with 1,000,000 tasks: do list pages stay fast?
 *
 *     node --import tsx bench/dashboard-store.ts [--tasks 1000000] [--store sqlite|memory] [--dir /path] [--json]
 *
 * Loads `--tasks` synthetic tasks (20 task names, 8 states, 50 workers, one
 * update a millisecond apart, args/result reprs and a 3-event timeline
 * each) through the store's own `putMany` in ingestion-sized batches, then
 * times, each over several runs (median and max, ms):
 * - the first page (50 newest), unfiltered and with each filter (state, one
 *   name, a name substring matching 4 names, worker, state + worker, a time
 *   range), with its total;
 * - deep pages: walking 2,000 pages of 100 by cursor (down to row 200,000),
 *   and the page found at row ~900,000;
 * - a detail lookup by id (random ids);
 * - one retention batch (500 rows).
 * - reopening the store (counts by name and state are read back at open).
 * The database lives in a temporary directory (on /dev/shm unless --dir
 * says otherwise), removed at the end.
 */
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createMemoryStore } from '../src/dashboard/model/store-memory.ts';
import { createSqliteStore } from '../src/dashboard/model/store-sqlite.ts';
import type { StoreQuery, StoredTask, TaskStore } from '../src/dashboard/model/store.ts';

const { values } = parseArgs({ options: { dir: { type: 'string' }, tasks: { type: 'string', default: '1000000' }, store: { type: 'string', default: 'sqlite' }, json: { type: 'boolean' } } });
const N = Number(values.tasks);
// On tmpfs when there is one: writing 1.2 GB through a shared machine's disk adds minutes, and what is
// measured (pages, lookups) reads pages the OS would hold in its cache anyway. --dir picks a disk.
const base = values.dir ?? (existsSync('/dev/shm') ? '/dev/shm' : tmpdir());
const dir = mkdtempSync(join(base, 'dash-bench-'));
const path = join(dir, 'tasks.db');
let store: TaskStore = values.store === 'memory' ? createMemoryStore({ maxTasks: N }) : createSqliteStore({ path, maxTasks: N, cacheKiB: 256 * 1024 });

const NAMES = Array.from({ length: 20 }, (_, i) => (i < 4 ? `billing.invoice_${i}` : `app.task_${i}`));
const STATES = ['SUCCESS', 'SUCCESS', 'SUCCESS', 'SUCCESS', 'FAILURE', 'STARTED', 'RECEIVED', 'RETRY'];
const T0 = 1_700_000_000;

function synthetic(i: number): StoredTask {
  const state = STATES[i % STATES.length]!;
  const worker = `celery@worker-${i % 50}`;
  const t = T0 + i / 1000;
  return {
    id: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
    name: NAMES[(i * 7) % NAMES.length]!,
    state,
    worker,
    updated: t,
    received: t - 0.004,
    started: t - 0.003,
    ...(state === 'SUCCESS' || state === 'FAILURE' ? { finished: t, runtime: 0.003 } : {}),
    args: `(${i}, 'customer-${i % 977}')`,
    kwargs: "{'priority': 'normal'}",
    ...(state === 'SUCCESS' ? { result: `{'ok': True, 'n': ${i}}` } : {}),
    ...(state === 'FAILURE' ? { exception: "ValueError('declined')", traceback: 'Traceback (most recent call last):\n  File "tasks.py", line 9, in run\nValueError: declined' } : {}),
    retries: 0,
    rootId: null,
    parentId: i % 10 === 0 || i < 1 ? null : `00000000-0000-4000-8000-${String(i - (i % 10)).padStart(12, '0')}`,
    timeline: [
      { type: 'task-received', timestamp: t - 0.004, worker, fields: { retries: 0 } },
      { type: 'task-started', timestamp: t - 0.003, worker, fields: {} },
      { type: `task-${state === 'FAILURE' ? 'failed' : 'succeeded'}`, timestamp: t, worker, fields: { runtime: 0.003 } },
    ],
  };
}

function time<T>(fn: () => T): [number, T] {
  const t = performance.now();
  const r = fn();
  return [performance.now() - t, r];
}

function stats(ms: number[]): { median: number; max: number } {
  const s = [...ms].sort((a, b) => a - b);
  return { median: s[Math.floor(s.length / 2)]!, max: s[s.length - 1]! };
}

const fmt = (x: number): string => x.toFixed(2);
const out: Record<string, unknown> = { store: store.kind, tasks: N };

// ── load ──────────────────────────────────────────────────────────────
const BATCH = 50_000;
const [loadMs] = time(() => {
  for (let i = 0; i < N; i += BATCH) {
    const writes = [];
    for (let j = i; j < Math.min(N, i + BATCH); j++) writes.push({ task: synthetic(j) });
    store.putMany(writes);
  }
});
out.loadSeconds = loadMs / 1000;
out.loadRowsPerSecond = Math.round(N / (loadMs / 1000));
if (store.kind === 'sqlite') out.fileMiB = Math.round(statSync(path).size / 2 ** 20);
console.log(`loaded ${N.toLocaleString('en')} tasks into ${store.kind} in ${(loadMs / 1000).toFixed(1)} s (${out.loadRowsPerSecond} rows/s${out.fileMiB ? `, ${out.fileMiB} MiB` : ''})`);

if (store.kind === 'sqlite') {
  // Reopened, as after a restart: the counts by name and state are read back at open.
  store.close();
  const [openMs, reopened] = time(() => createSqliteStore({ path, maxTasks: N, cacheKiB: 256 * 1024 }));
  store = reopened;
  out.openSeconds = openMs / 1000;
  console.log(`reopened with ${store.size().toLocaleString('en')} tasks in ${(openMs / 1000).toFixed(1)} s`);
}

// ── first pages ───────────────────────────────────────────────────────
const cases: Array<[string, Omit<StoreQuery, 'limit'>]> = [
  ['unfiltered', {}],
  ['state=FAILURE', { state: 'FAILURE' }],
  ['name=app.task_7', { names: ['app.task_7'] }],
  ['name~"billing" (4 names)', { names: NAMES.filter((n) => n.includes('billing')) }],
  ['worker=celery@worker-7', { worker: 'celery@worker-7' }],
  ['state=RETRY & worker', { state: 'RETRY', worker: 'celery@worker-3' }],
  ['last 10 minutes', { from: T0 + N / 1000 - 600 }],
  ['name + state + range', { names: ['app.task_9'], state: 'RETRY', from: T0 + N / 2000, to: T0 + N / 1000 }],
  ['name + worker', { names: ['app.task_9'], worker: 'celery@worker-7' }],
  // No row matches: the filtered index is read to its end (the worst case of a filter combination).
  ['no match (name + state)', { names: ['app.task_9'], state: 'FAILURE' }],
];
const firstPages: Record<string, unknown> = {};
for (const [label, q] of cases) {
  const runs: number[] = [];
  let page;
  for (let r = 0; r < 7; r++) {
    const [ms, p] = time(() => store.query({ ...q, limit: 50 }));
    runs.push(ms);
    page = p;
  }
  const s = stats(runs);
  firstPages[label] = { ...s, rows: page!.items.length, total: page!.total, estimate: page!.totalIsEstimate };
  console.log(`first page ${label.padEnd(28)} median ${fmt(s.median)} ms  max ${fmt(s.max)} ms  (${page!.items.length} rows, total ${page!.total}${page!.totalIsEstimate ? '+' : ''})`);
}
out.firstPages = firstPages;

// ── deep pages ────────────────────────────────────────────────────────
{
  const pageMs: number[] = [];
  let cursor: string | undefined;
  for (let p = 0; p < 2000; p++) {
    const [ms, page] = time(() => store.query({ limit: 100, ...(cursor ? { cursor } : {}) }));
    pageMs.push(ms);
    cursor = page.nextCursor;
    if (!cursor) break;
  }
  const s = stats(pageMs);
  out.walk2000Pages = { ...s, pages: pageMs.length };
  console.log(`walking ${pageMs.length} pages of 100 by cursor    median ${fmt(s.median)} ms  max ${fmt(s.max)} ms per page (to row ${pageMs.length * 100})`);
  // A filtered walk: state=FAILURE, 500 pages of 50.
  const fMs: number[] = [];
  cursor = undefined;
  for (let p = 0; p < 500; p++) {
    const [ms, page] = time(() => store.query({ limit: 50, state: 'FAILURE', ...(cursor ? { cursor } : {}) }));
    fMs.push(ms);
    cursor = page.nextCursor;
    if (!cursor) break;
  }
  const f = stats(fMs);
  out.walkFiltered = { ...f, pages: fMs.length };
  console.log(`walking ${fMs.length} pages state=FAILURE by cursor median ${fmt(f.median)} ms  max ${fmt(f.max)} ms per page`);
}
{
  // The page at row ~900,000, from the cursor the page before it would hand out. SQLite's cursor is the
  // keyset of the last row shown ([updated, id], base64url JSON): made here from the synthetic row, since
  // walking 900,000 rows to get it would take most of the bench's minute. The memory store's is walked.
  let cursor: string | undefined;
  let depth = 0;
  const target = Math.floor(N * 0.9);
  if (store.kind === 'sqlite') {
    const last = synthetic(N - target);
    cursor = Buffer.from(JSON.stringify([last.updated, last.id])).toString('base64url');
    depth = target;
  }
  while (depth < target) {
    const page = store.query({ limit: 500, ...(cursor ? { cursor } : {}) });
    depth += page.items.length;
    cursor = page.nextCursor;
    if (!cursor) break;
  }
  const runs: number[] = [];
  let page;
  for (let r = 0; r < 7; r++) {
    const [ms, p] = time(() => store.query({ limit: 50, ...(cursor ? { cursor } : {}) }));
    runs.push(ms);
    page = p;
  }
  const s = stats(runs);
  const firstId = page!.items[0]?.id;
  if (firstId !== synthetic(N - 1 - depth).id) throw new Error(`the page at row ${depth} starts at ${firstId}`);
  out.deepPage = { ...s, depth, rows: page!.items.length };
  console.log(`page at row ${depth.toLocaleString('en').padEnd(22)} median ${fmt(s.median)} ms  max ${fmt(s.max)} ms  (${page!.items.length} rows)`);
}

// ── detail ────────────────────────────────────────────────────────────
{
  const runs: number[] = [];
  for (let r = 0; r < 1000; r++) {
    const i = Math.floor(Math.random() * N);
    const [ms, t] = time(() => {
      const task = store.get(synthetic(i).id);
      return task ? store.children(task.id) : undefined;
    });
    if (!t) throw new Error(`task ${i} not found`);
    runs.push(ms);
  }
  const s = stats(runs);
  out.detail = s;
  console.log(`detail lookup (task + children) median ${fmt(s.median)} ms  max ${fmt(s.max)} ms (1,000 random ids)`);
}

// ── retention ─────────────────────────────────────────────────────────
{
  const [ms, n] = time(() => store.prune({ olderThan: T0 + 10, batch: 500 }));
  out.pruneBatch = { ms, rows: n };
  console.log(`one retention batch: ${n} rows in ${fmt(ms)} ms`);
}

store.close();
rmSync(dir, { recursive: true, force: true });
if (values.json) console.log(JSON.stringify(out));
