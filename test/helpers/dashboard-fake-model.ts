/**
 * A fake DashboardModel for the dashboard server's tests: canned workers,
 * tasks (one with an XSS payload in its args), queues and series, and a record
 * of every action called, so a test can assert that a refused request never
 * reached the model.
 */
import type { ActionResult, DashboardModel, LiveUpdate, TaskDetail, TaskRow, WorkerView } from '../../src/dashboard/model/types.ts';

export const XSS_ARGS = `['<img src=x onerror="window.__xss=1">', '</script><script>window.__xss=2</script>', '"><svg onload=window.__xss=3>']`;

export interface FakeModel extends DashboardModel {
  /** Every action call, in order: [method, ...args]. */
  calls: unknown[][];
  /** Push a live update to subscribers. */
  emit(update: LiveUpdate): void;
  tasksById: Map<string, TaskDetail>;
  setHealth(h: { live: boolean; ready: boolean }): void;
}

export function createFakeModel(): FakeModel {
  const now = Math.floor(Date.now() / 1000);
  const workers: WorkerView[] = [
    { hostname: 'celeriac@alpha', status: 'online', lastHeartbeat: now - 1, freq: 2, pid: 101, software: 'celeriac 0.1.0', loadavg: [0.3, 0.2, 0.1], active: 1, processed: 120, failed: 3, succeeded: 117, pool: { target: 4, live: 4, kind: 'prefork' }, registered: ['tasks.add', 'tasks.slow'], queues: ['celery'] },
    { hostname: 'py@beta', status: 'offline', lastHeartbeat: now - 600, freq: 2, pid: 202, software: 'py-celery 5.2.6', active: 0, processed: 40, failed: 1, succeeded: 39, queues: ['celery', 'mail'] },
  ];
  const tasksById = new Map<string, TaskDetail>();
  const mk = (id: string, name: string, state: string, extra: Partial<TaskDetail> = {}): void => {
    tasksById.set(id, { id, name, state, worker: 'celeriac@alpha', sent: now - 30, received: now - 29, started: now - 28, updated: now - 20, args: '…', kwargs: '…', children: [], timeline: [{ type: 'task-received', timestamp: now - 29, worker: 'celeriac@alpha', fields: {} }], clear: false, ...extra });
  };
  mk('11111111-1111-4111-8111-111111111111', 'tasks.add', 'SUCCESS', { result: '…', runtime: 0.01, finished: now - 20 });
  mk('22222222-2222-4222-8222-222222222222', 'tasks.slow', 'STARTED');
  mk('33333333-3333-4333-8333-333333333333', '<img src=x onerror="window.__xss=4">', 'FAILURE', { exception: '</script><script>window.__xss=5</script>', traceback: 'Traceback\n  <b onmouseover=alert(1)>x</b>', finished: now - 10 });
  const clearArgs: Record<string, string> = { '33333333-3333-4333-8333-333333333333': XSS_ARGS, '11111111-1111-4111-8111-111111111111': '[2, 2]' };
  const listeners = new Set<(u: LiveUpdate) => void>();
  const calls: unknown[][] = [];
  let health = { live: true, ready: true };
  const ok = (m: string): ActionResult => ({ ok: true, message: m });
  const rec = (name: string, ...args: unknown[]): Promise<ActionResult> => {
    calls.push([name, ...args]);
    return Promise.resolve(ok(`${name} sent`));
  };
  const view = (t: TaskDetail, clear: boolean): TaskDetail => (clear ? { ...t, args: clearArgs[t.id] ?? t.args, kwargs: '{}', result: t.state === 'SUCCESS' ? '4' : undefined, clear: true } : t);
  return {
    calls,
    tasksById,
    setHealth: (h) => void (health = h),
    emit: (u) => listeners.forEach((l) => l(u)),
    workers: () => workers,
    worker: (h) => workers.find((w) => w.hostname === h),
    async tasks(q) {
      let rows: TaskRow[] = [...tasksById.values()].map((t) => view(t, q.clear === true));
      if (q.id) rows = rows.filter((r) => r.id === q.id);
      if (q.name) rows = rows.filter((r) => r.name?.includes(q.name!));
      if (q.state) rows = rows.filter((r) => r.state === q.state);
      if (q.worker) rows = rows.filter((r) => r.worker === q.worker);
      const start = q.cursor ? Number(q.cursor) : 0;
      const limit = q.limit ?? 50;
      const items = rows.slice(start, start + limit).map(({ ...r }) => {
        const { timeline: _t, children: _c, clear: _cl, traceback: _tb, ...row } = r as TaskDetail;
        return row;
      });
      return { items, total: rows.length, nextCursor: start + limit < rows.length ? String(start + limit) : undefined };
    },
    async task(id, o) {
      const t = tasksById.get(id);
      return t ? view(t, o?.clear === true) : undefined;
    },
    taskNames: () => [...new Set([...tasksById.values()].map((t) => t.name ?? ''))],
    async queues() {
      return [
        { name: 'celery', depth: 12, rateIn: 3.5, rateOut: 3.1, oldestAgeSeconds: 4, deadLetters: 1, paused: false, consumers: ['celeriac@alpha'] },
        { name: 'mail', depth: 0, rateIn: 0, rateOut: 0, deadLetters: 0, paused: true, consumers: [] },
      ];
    },
    async deadLetters(queue, o) {
      return queue === 'celery' ? [{ id: '44444444-4444-4444-8444-444444444444', name: 'tasks.add', reason: 'signature check failed <b>x</b>', at: now - 100, args: o?.clear ? '[1]' : '…', kwargs: o?.clear ? '{}' : '…' }] : [];
    },
    async series({ from, bucketSeconds = 60 }) {
      const out = [];
      for (let t = Math.floor(from / bucketSeconds) * bucketSeconds; t <= now; t += bucketSeconds) {
        const k = (t / bucketSeconds) % 10;
        out.push({ t, succeeded: 10 + k, failed: k % 3, retried: k % 2, received: 11 + k, latencyP50: 0.1 + k / 100, latencyP95: 0.3 + k / 50 });
      }
      return out;
    },
    subscribe(l) {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    actions: {
      revoke: (id, o) => rec('revoke', id, o),
      retry: (id) => rec('retry', id),
      rateLimit: (n, r, w) => rec('rateLimit', n, r, w),
      redriveDeadLetters: (q, ids) => rec('redriveDeadLetters', q, ids),
      dropDeadLetters: (q, ids) => rec('dropDeadLetters', q, ids),
      pauseQueue: (q) => rec('pauseQueue', q),
      resumeQueue: (q) => rec('resumeQueue', q),
      shutdown: (w) => rec('shutdown', w),
      poolGrow: (w, n) => rec('poolGrow', w, n),
      poolShrink: (w, n) => rec('poolShrink', w, n),
      addConsumer: (w, q) => rec('addConsumer', w, q),
      cancelConsumer: (w, q) => rec('cancelConsumer', w, q),
    },
    async beat() {
      return {
        available: true, namespace: 'default', where: 'memory at memory:// (the broker)',
        leader: { holder: 'beat-1@host', token: 7, expiresAt: now + 30 },
        entries: [{ name: 'nightly <b>report</b>', lastRun: now - 60, sentAt: now - 60, taskId: 'beat-task-1', token: 7, confirmed: true, total: 12, skipped: 1 }],
      };
    },
    async metrics() {
      return { contentType: 'text/plain; version=0.0.4; charset=utf-8', body: '# HELP celeriac_dashboard_up 1\nceleriac_dashboard_up 1\n' };
    },
    health: () => ({ ...health, detail: 'fake' }),
    async close() {},
  };
}
