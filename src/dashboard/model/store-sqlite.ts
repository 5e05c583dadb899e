/**
 * The embedded SQLite task store (better-sqlite3, WAL): a month of tasks on
 * disk instead of in memory, with retention by age and count.
 *
 * - One row per task: the filtered columns (`name`, `state`, `worker`,
 *   `updated`, `parent_id`) and two JSON columns, `row` (what a list page
 *   shows) and `detail` (traceback and timeline, read only by the detail view).
 * - One index per filter, and one for each of the two combinations the UI
 *   offers most (name + state, worker + state), each ending in
 *   `(updated, id)`, so a filtered page is an index range read in page
 *   order: `(updated, id) < cursor` is the keyset, never an OFFSET, so page
 *   1,000 costs what page 1 costs. Other combinations read one index and
 *   test the rest (measured in bench/dashboard-store.ts).
 * - A name substring is resolved by the model to the matching names, and
 *   several names run as one bounded index read per name merged with UNION
 *   ALL (an `IN` list would read every row of each name and sort them).
 * - Writes of one ingestion tick go in one transaction; counts by name and
 *   state are kept in memory (read once at open) for totals and metrics.
 * - Retention deletes the oldest rows in small batches so a prune never
 *   holds the write lock long enough to stall ingestion.
 */
import { closeSync, constants, lstatSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import type Database from 'better-sqlite3';
import { loadSqliteDriver } from './sqlite-driver.ts';
import { ConfigError, ValidationError } from '../../errors.ts';
import { bump, EXACT_COUNT_LIMIT, type StorePage, type StoreQuery, type StoredRow, type StoredTask, type TaskStore, type TaskWrite } from './store.ts';

/** Options of the SQLite store. */
export interface SqliteStoreOptions {
  /** Database file (created 0600 in a 0700 directory when missing). */
  path: string;
  /** Most tasks kept; the oldest beyond it are pruned (default 1,000,000). */
  maxTasks?: number;
  /** SQLite page cache, KiB (default 32 MiB). */
  cacheKiB?: number;
}

export const DEFAULT_SQLITE_MAX_TASKS = 1_000_000;

/** More names than this matching a substring: scan by time and test each name instead. */
const MAX_NAMES_MERGED = 24;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS tasks (
  id TEXT PRIMARY KEY NOT NULL,
  name TEXT,
  state TEXT NOT NULL,
  worker TEXT,
  updated REAL NOT NULL,
  parent_id TEXT,
  row TEXT NOT NULL,
  detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_by_updated ON tasks(updated, id);
CREATE INDEX IF NOT EXISTS tasks_by_name ON tasks(name, updated, id);
CREATE INDEX IF NOT EXISTS tasks_by_state ON tasks(state, updated, id);
CREATE INDEX IF NOT EXISTS tasks_by_worker ON tasks(worker, updated, id);
CREATE INDEX IF NOT EXISTS tasks_by_name_state ON tasks(name, state, updated, id);
CREATE INDEX IF NOT EXISTS tasks_by_worker_state ON tasks(worker, state, updated, id);
CREATE INDEX IF NOT EXISTS tasks_by_parent ON tasks(parent_id) WHERE parent_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);
INSERT OR IGNORE INTO meta(key, value) VALUES ('schema', '1');
`;

/** Create the file ourselves (0600, never through a symlink) and its directory (0700). */
function prepareFile(path: string): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  try {
    const st = lstatSync(path);
    if (st.isSymbolicLink() || !st.isFile()) throw new ConfigError(`the dashboard task store ${path} is not a regular file`, { hint: 'give a path to a regular file (symbolic links are refused)' });
    return;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const fd = openSync(path, constants.O_CREAT | constants.O_EXCL | constants.O_RDWR | (constants.O_NOFOLLOW ?? 0), 0o600);
  closeSync(fd);
}

type Row = { id: string; name: string | null; state: string; worker: string | null; updated: number; parent_id: string | null; row: string; detail?: string };

/** Fields kept in the `row` JSON column. */
const ROW_KEYS = ['sent', 'received', 'started', 'finished', 'runtime', 'retries', 'args', 'kwargs', 'result', 'exception', 'eta', 'expires', 'rootId', 'groupId', 'queue', 'client'] as const;

function encodeRow(t: StoredTask): string {
  const o: Record<string, unknown> = {};
  for (const k of ROW_KEYS) if (t[k] !== undefined) o[k] = t[k];
  return JSON.stringify(o);
}

function decodeRow(r: Row): StoredRow {
  const o = JSON.parse(r.row) as Partial<StoredTask>;
  return {
    ...o,
    id: r.id,
    state: r.state,
    updated: r.updated,
    ...(r.name !== null ? { name: r.name } : {}),
    ...(r.worker !== null ? { worker: r.worker } : {}),
    ...(r.parent_id !== null ? { parentId: r.parent_id } : {}),
  } as StoredRow;
}

function encodeCursor(updated: number, id: string): string {
  return Buffer.from(JSON.stringify([updated, id])).toString('base64url');
}

function decodeCursor(cursor: string): [number, string] {
  try {
    const v = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown;
    if (Array.isArray(v) && v.length === 2 && typeof v[0] === 'number' && Number.isFinite(v[0]) && typeof v[1] === 'string') return [v[0], v[1]];
  } catch {
    // fall through
  }
  throw new ValidationError('invalid cursor', { field: 'cursor', hint: 'pass the nextCursor of the previous page unchanged' });
}

/** Open (or create) the SQLite task store. */
export function createSqliteStore(options: SqliteStoreOptions): TaskStore {
  const maxTasks = Math.max(1, options.maxTasks ?? DEFAULT_SQLITE_MAX_TASKS);
  prepareFile(options.path);
  const Driver = loadSqliteDriver("the dashboard's SQLite task store", "install it (npm install better-sqlite3), or use the memory store (store: { kind: 'memory' })");
  const db = new Driver(options.path, { timeout: 5000 });
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma(`cache_size = -${options.cacheKiB ?? 32 * 1024}`);
  db.pragma('temp_store = MEMORY');
  db.exec(SCHEMA);

  const statements = new Map<string, Database.Statement<unknown[]>>();
  const stmt = (sql: string): Database.Statement<unknown[]> => {
    let s = statements.get(sql);
    if (!s) {
      s = db.prepare(sql);
      statements.set(sql, s);
    }
    return s;
  };

  const counts = new Map<string, Map<string, number>>();
  let size = 0;
  for (const r of db.prepare('SELECT name, state, count(*) AS n FROM tasks GROUP BY name, state').all() as Array<{ name: string | null; state: string; n: number }>) {
    bump(counts, r.name ?? undefined, r.state, r.n);
    size += r.n;
  }

  const upsert = db.prepare(
    `INSERT INTO tasks(id, name, state, worker, updated, parent_id, row, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
     ON CONFLICT(id) DO UPDATE SET name = excluded.name, state = excluded.state, worker = excluded.worker, updated = excluded.updated,
       parent_id = excluded.parent_id, row = excluded.row, detail = excluded.detail`,
  );
  const writeAll = db.transaction((writes: readonly TaskWrite[]) => {
    for (const { task: t } of writes) {
      upsert.run(t.id, t.name ?? null, t.state, t.worker ?? null, t.updated, t.parentId ?? null, encodeRow(t), JSON.stringify({ traceback: t.traceback, timeline: t.timeline }));
    }
  });
  const deleteById = db.prepare('DELETE FROM tasks WHERE id = ?');
  const deleteAll = db.transaction((rows: Array<{ id: string; name: string | null; state: string }>) => {
    let n = 0;
    for (const r of rows) {
      if (deleteById.run(r.id).changes > 0) {
        n++;
        size--;
        bump(counts, r.name ?? undefined, r.state, -1);
      }
    }
    return n;
  });

  const COLUMNS = 'id, name, state, worker, updated, parent_id, row';

  /** WHERE clause (without the name) and its parameters. */
  const filters = (q: StoreQuery, cursor: [number, string] | undefined): { sql: string[]; params: unknown[] } => {
    const sql: string[] = [];
    const params: unknown[] = [];
    if (q.nameContains !== undefined) {
      sql.push('instr(name, ?) > 0');
      params.push(q.nameContains);
    }
    if (q.state !== undefined) {
      sql.push('state = ?');
      params.push(q.state);
    }
    if (q.worker !== undefined) {
      sql.push('worker = ?');
      params.push(q.worker);
    }
    if (q.from !== undefined) {
      sql.push('updated >= ?');
      params.push(q.from);
    }
    if (q.to !== undefined) {
      sql.push('updated <= ?');
      params.push(q.to);
    }
    if (cursor) {
      sql.push('(updated, id) < (?, ?)');
      params.push(cursor[0], cursor[1]);
    }
    return { sql, params };
  };

  const page = (q: StoreQuery, cursor: [number, string] | undefined, limit: number): StoredRow[] => {
    const f = filters(q, cursor);
    const order = 'ORDER BY updated DESC, id DESC';
    const names = q.names;
    let sql: string;
    let params: unknown[];
    if (!names || names.length === 1) {
      const where = names ? ['name = ?', ...f.sql] : f.sql;
      sql = `SELECT ${COLUMNS} FROM tasks${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ${order} LIMIT ?`;
      params = [...(names ? [names[0]] : []), ...f.params, limit];
    } else if (names.length === 0) {
      return [];
    } else {
      const one = `SELECT * FROM (SELECT ${COLUMNS} FROM tasks WHERE ${['name = ?', ...f.sql].join(' AND ')} ${order} LIMIT ?)`;
      sql = `${names.map(() => one).join(' UNION ALL ')} ${order} LIMIT ?`;
      params = [...names.flatMap((n) => [n, ...f.params, limit]), limit];
    }
    return (stmt(sql).all(...params) as Row[]).map(decodeRow);
  };

  const countUpTo = (q: StoreQuery, cap: number): number => {
    const f = filters(q, undefined);
    const one = (name: string | undefined): number => {
      const where = name !== undefined ? ['name = ?', ...f.sql] : f.sql;
      const sql = `SELECT count(*) AS n FROM (SELECT 1 FROM tasks${where.length ? ` WHERE ${where.join(' AND ')}` : ''} LIMIT ?)`;
      return (stmt(sql).get(...(name !== undefined ? [name] : []), ...f.params, cap) as { n: number }).n;
    };
    if (!q.names) return one(undefined);
    let n = 0;
    for (const name of q.names) {
      n += one(name);
      if (n >= cap) break;
    }
    return n;
  };

  const stateTotal = (state: string): number => {
    let n = 0;
    for (const byState of counts.values()) n += byState.get(state) ?? 0;
    return n;
  };

  return {
    kind: 'sqlite',
    get(id) {
      const r = stmt(`SELECT ${COLUMNS}, detail FROM tasks WHERE id = ?`).get(id) as Row | undefined;
      if (!r) return undefined;
      const detail = JSON.parse(r.detail ?? '{}') as Pick<StoredTask, 'traceback' | 'timeline'>;
      return { ...decodeRow(r), ...(detail.traceback !== undefined ? { traceback: detail.traceback } : {}), timeline: detail.timeline ?? [] } as StoredTask;
    },
    putMany(writes) {
      if (writes.length === 0) return;
      writeAll(writes);
      for (const { task, before } of writes) {
        if (before) bump(counts, before.name, before.state, -1);
        else size++;
        bump(counts, task.name, task.state, 1);
      }
    },
    query(q) {
      const limit = q.limit;
      if (q.id !== undefined) {
        const t = q.cursor ? undefined : (stmt(`SELECT ${COLUMNS} FROM tasks WHERE id = ?`).get(q.id) as Row | undefined);
        const row = t ? decodeRow(t) : undefined;
        const ok = row && (!q.names || q.names.includes(row.name ?? '')) && (q.state === undefined || row.state === q.state) && (q.worker === undefined || row.worker === q.worker);
        return { items: ok ? [row] : [], total: ok ? 1 : 0, totalIsEstimate: false };
      }
      const names = q.names && q.names.length > MAX_NAMES_MERGED ? undefined : q.names;
      const effective: StoreQuery = names === q.names ? q : { ...q, names: undefined };
      const cursor = q.cursor !== undefined ? decodeCursor(q.cursor) : undefined;
      const rows = page(effective, cursor, limit + 1);
      const items = rows.slice(0, limit);
      const last = items[items.length - 1];
      const nextCursor = rows.length > limit && last ? encodeCursor(last.updated, last.id) : undefined;
      const onlyState = !effective.names && effective.state !== undefined && effective.worker === undefined && effective.from === undefined && effective.to === undefined && effective.nameContains === undefined;
      const onlyName = effective.names?.length === 1 && effective.state === undefined && effective.worker === undefined && effective.from === undefined && effective.to === undefined && effective.nameContains === undefined;
      const unfiltered = !effective.names && effective.state === undefined && effective.worker === undefined && effective.from === undefined && effective.to === undefined && effective.nameContains === undefined;
      let total: number;
      let totalIsEstimate = false;
      if (unfiltered) total = size;
      else if (onlyState) total = stateTotal(effective.state!);
      else if (onlyName) total = [...(counts.get(effective.names![0]!)?.values() ?? [])].reduce((a, b) => a + b, 0);
      else {
        total = countUpTo(effective, EXACT_COUNT_LIMIT + 1);
        if (total > EXACT_COUNT_LIMIT) totalIsEstimate = true;
      }
      return { items, total, totalIsEstimate, ...(nextCursor ? { nextCursor } : {}) };
    },
    children: (id, limit = 1000) => (stmt('SELECT id FROM tasks WHERE parent_id = ? LIMIT ?').all(id, limit) as Array<{ id: string }>).map((r) => r.id),
    size: () => size,
    names: () => [...counts.keys()].filter(Boolean).sort(),
    countsByNameState: () => counts,
    prune({ olderThan, batch = 500 }) {
      let rows: Array<{ id: string; name: string | null; state: string }> = [];
      if (olderThan !== undefined) rows = stmt('SELECT id, name, state FROM tasks WHERE updated < ? ORDER BY updated, id LIMIT ?').all(olderThan, batch) as typeof rows;
      if (rows.length === 0 && size > maxTasks) rows = stmt('SELECT id, name, state FROM tasks ORDER BY updated, id LIMIT ?').all(Math.min(batch, size - maxTasks)) as typeof rows;
      return rows.length ? deleteAll(rows) : 0;
    },
    getMeta: (key) => (stmt('SELECT value FROM meta WHERE key = ?').get(`dashboard:${key}`) as { value: string } | undefined)?.value,
    setMeta(key, value) {
      if (value === undefined) stmt('DELETE FROM meta WHERE key = ?').run(`dashboard:${key}`);
      else stmt('INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value').run(`dashboard:${key}`, value);
    },
    close() {
      if (db.open) db.close();
    },
  };
}
