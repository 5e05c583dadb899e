/**
 * Stored tasks as the views show them: rows and details with their data
 * masked unless `clear` (redact.ts), and opening the store the options ask for.
 */
import { ConfigError } from '../../errors.ts';
import { shown } from './redact.ts';
import { createMemoryStore } from './store-memory.ts';
import { createSqliteStore } from './store-sqlite.ts';
import type { StoredRow, StoredTask, TaskStore } from './store.ts';
import type { DashboardModelOptions, TaskDetail, TaskRow } from './types.ts';

/** Open the store the options ask for. */
export function openStore(store: DashboardModelOptions['store']): TaskStore {
  if (!store || store.kind === 'memory') return createMemoryStore({ ...(store?.maxTasks !== undefined ? { maxTasks: store.maxTasks } : {}) });
  if (store.kind === 'sqlite') {
    if (!store.path) throw new ConfigError('the SQLite task store needs a path', { hint: "store: { kind: 'sqlite', path: '/var/lib/celeriac/dashboard.db' }" });
    return createSqliteStore({ path: store.path, ...(store.maxTasks !== undefined ? { maxTasks: store.maxTasks } : {}) });
  }
  throw new ConfigError(`unknown task store ${JSON.stringify((store as { kind?: unknown }).kind)}`, { hint: "use { kind: 'memory' } or { kind: 'sqlite', path }" });
}

export function row(t: StoredRow | StoredTask, clear: boolean): TaskRow {
  const r: TaskRow = { id: t.id, state: t.state, updated: t.updated };
  if (t.name !== undefined) r.name = t.name;
  if (t.worker !== undefined) r.worker = t.worker;
  for (const k of ['sent', 'received', 'started', 'finished', 'runtime', 'retries'] as const) if (t[k] !== undefined) r[k] = t[k];
  const args = shown(t.args, 'repr', clear);
  if (args !== undefined) r.args = args;
  const kwargs = shown(t.kwargs, 'repr', clear);
  if (kwargs !== undefined) r.kwargs = kwargs;
  const result = shown(t.result, 'repr', clear);
  if (result !== undefined) r.result = result;
  const exception = shown(t.exception, 'exception', clear);
  if (exception !== undefined) r.exception = exception;
  return r;
}

/** Timeline fields that carry task data: masked like the task's own. */
const DATA_FIELDS = new Set(['args', 'kwargs', 'result', 'exception', 'traceback', 'reason']);

/** The detail view of a stored task. */
export function detailOf(t: StoredTask, children: string[], clear: boolean): TaskDetail {
  const d: TaskDetail = {
    ...row(t, clear),
    children,
    clear,
    timeline: t.timeline.map((e) => {
      const fields: Record<string, string | number | boolean | null> = {};
      for (const [k, v] of Object.entries(e.fields)) fields[k] = typeof v === 'string' && DATA_FIELDS.has(k) ? (shown(v, k === 'traceback' ? 'traceback' : 'repr', clear) ?? '') : v;
      return { type: e.type, timestamp: e.timestamp, ...(e.worker !== undefined ? { worker: e.worker } : {}), fields };
    }),
  };
  const tb = shown(t.traceback, 'traceback', clear);
  if (tb !== undefined) d.traceback = tb;
  if (t.eta !== undefined) d.eta = t.eta;
  if (t.expires !== undefined) d.expires = t.expires;
  if (t.rootId !== undefined) d.rootId = t.rootId;
  if (t.parentId !== undefined) d.parentId = t.parentId;
  if (t.groupId !== undefined) d.groupId = t.groupId;
  if (t.queue !== undefined) d.queue = t.queue;
  return d;
}
