/**
 * Progress states and the extended STARTED record across languages, on a
 * private Redis: a Python client reads the PROGRESS states of a Celeriac
 * task while it runs (AsyncResult.state / .info), and the STARTED record a
 * Celeriac worker stores with result_extended is compared, key by key and
 * in order, with the one Python Celery 5.2.6 stores for the same call.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startCeleriacWorker, ROOT, type CeleriacWorkerProcess } from '../../helpers/celeriac-worker.ts';
import { pyScript, startPythonWorker, type PythonWorker } from '../../helpers/python-celery.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { hasPythonCelery, requireService } from '../../helpers/services.ts';

const TM_TASKS = `${ROOT}test/interop/apps/taskmodel_tasks.ts`;

/** Python: send, poll state/info every 20 ms until ready, print what was seen. */
const POLL_PROGRESS = `
import json, time
from harness_tasks import app
r = app.send_task('tm.progress', args=[3, 0.6], queue='tsq')
seen = []
deadline = time.time() + 30
while not r.ready() and time.time() < deadline:
    item = [r.state, r.info if r.state == 'PROGRESS' else None]
    if not seen or seen[-1] != item:
        seen.append(item)
    time.sleep(0.02)
print(json.dumps({'seen': seen, 'final': r.get(timeout=10), 'state': r.state}))
`;

/** Python: send tasks.sleep to a queue, wait for STARTED, print the raw meta dict. */
const STARTED_META = (queue: string) => `
import json, time
from harness_tasks import app
r = app.send_task('tasks.sleep', args=[1.5], queue='${queue}')
deadline = time.time() + 30
meta = None
while time.time() < deadline:
    meta = app.backend.get_task_meta(r.id, cache=False)
    if meta.get('status') == 'STARTED':
        break
    time.sleep(0.02)
r.get(timeout=20)
print(json.dumps({'meta': meta, 'keys': list(meta.keys()) if meta else None}, default=str))
`;

/** Python: send tm.progress to a queue, print the raw meta dict of its first PROGRESS record. */
const PROGRESS_META = (queue: string) => `
import json, time
from harness_tasks import app
r = app.send_task('tm.progress', args=[2, 0.5], kwargs={}, queue='${queue}')
deadline = time.time() + 30
meta = None
while time.time() < deadline:
    meta = app.backend.get_task_meta(r.id, cache=False)
    if meta.get('status') == 'PROGRESS':
        break
    time.sleep(0.01)
r.get(timeout=20)
print(json.dumps({'meta': meta, 'keys': list(meta.keys())}, default=str))
`;

describe('progress states and extended STARTED records (Redis, Python Celery 5.2.6)', () => {
  let redis: RedisServer | undefined;
  let worker: CeleriacWorkerProcess | undefined;
  let py: PythonWorker | undefined;
  let env: Record<string, string> = {};
  const ready = hasRedisServer() && hasPythonCelery();

  before(async () => {
    if (!ready) return;
    redis = await startRedisServer();
    env = { CELERY_BROKER_URL: redis.url(0), CELERY_RESULT_BACKEND: redis.url(1), CELERY_RESULT_EXTENDED: '1' };
    worker = await startCeleriacWorker({
      module: TM_TASKS,
      env: { CELERIAC_BROKER_URL: redis.url(0), CELERIAC_RESULT_BACKEND: redis.url(1), CELERIAC_RESULT_EXTENDED: '1', CELERIAC_TRACK_STARTED: '1' },
      args: ['-c', '2', '-Q', 'tsq', '-n', 'tm-ts@localhost'],
    });
    py = await startPythonWorker({
      brokerUrl: redis.url(0),
      backendUrl: redis.url(1),
      name: 'tm-py@localhost',
      env: { CELERY_RESULT_EXTENDED: '1', CELERY_TRACK_STARTED: '1' },
      args: ['-Q', 'pyq', '--include', 'taskmodel_tasks'],
    });
  });
  after(async () => {
    await worker?.stop();
    await py?.stop();
    await redis?.stop();
  });

  it('a Python client sees PROGRESS 1/3, 2/3, 3/3 of a Celeriac task, then SUCCESS', async (t) => {
    if (!requireService(t, ready, 'redis-server and python3-celery')) return;
    const out = JSON.parse((await pyScript(POLL_PROGRESS, env)).trim().split('\n').pop()!) as { seen: Array<[string, unknown]>; final: unknown; state: string };
    assert.equal(out.state, 'SUCCESS');
    assert.equal(out.final, 'done');
    const progress = out.seen.filter(([s]) => s === 'PROGRESS').map(([, info]) => info);
    assert.deepEqual(progress, [1, 2, 3].map((current) => ({ current, total: 3 })), `seen: ${JSON.stringify(out.seen)}`);
    // Nothing but PENDING/STARTED before the PROGRESS states (the worker tracks started). The poll reads
    // ready() and then state, so SUCCESS may show up once, last, when the task ends between the two reads.
    const seen = out.seen.at(-1)?.[0] === 'SUCCESS' ? out.seen.slice(0, -1) : out.seen;
    for (const [s] of seen) assert.ok(['PENDING', 'STARTED', 'PROGRESS'].includes(s), s);
  });

  it("the extended STARTED record matches Python's: same keys in the same order, same values", async (t) => {
    if (!requireService(t, ready, 'redis-server and python3-celery')) return;
    const [ts, pyOut] = await Promise.all([pyScript(STARTED_META('tsq'), env), pyScript(STARTED_META('pyq'), env)]);
    const a = JSON.parse(ts.trim().split('\n').pop()!) as { meta: Record<string, unknown>; keys: string[] };
    const b = JSON.parse(pyOut.trim().split('\n').pop()!) as { meta: Record<string, unknown>; keys: string[] };
    assert.equal(a.meta.status, 'STARTED');
    assert.equal(b.meta.status, 'STARTED');
    assert.deepEqual(a.keys, b.keys);
    for (const k of ['status', 'traceback', 'children', 'date_done', 'name', 'args', 'kwargs', 'retries']) assert.deepEqual(a.meta[k], b.meta[k], k);
    assert.equal(a.meta.worker, 'tm-ts@localhost');
    assert.equal(b.meta.worker, 'tm-py@localhost');
    assert.equal(a.meta.queue, 'tsq');
    assert.equal(b.meta.queue, 'pyq');
    assert.deepEqual(Object.keys(a.meta.result as object), Object.keys(b.meta.result as object));
  });

  it("a Celeriac PROGRESS record matches Python's update_state record key for key (result_extended on)", async (t) => {
    if (!requireService(t, ready, 'redis-server and python3-celery')) return;
    const [ts, pyOut] = await Promise.all([pyScript(PROGRESS_META('tsq'), env), pyScript(PROGRESS_META('pyq'), env)]);
    const a = JSON.parse(ts.trim().split('\n').pop()!) as { meta: Record<string, unknown>; keys: string[] };
    const b = JSON.parse(pyOut.trim().split('\n').pop()!) as { meta: Record<string, unknown>; keys: string[] };
    assert.equal(a.meta.status, 'PROGRESS');
    assert.equal(b.meta.status, 'PROGRESS');
    assert.deepEqual(a.keys, b.keys);
    for (const k of ['status', 'result', 'traceback', 'children', 'date_done', 'name', 'args', 'kwargs', 'retries']) assert.deepEqual(a.meta[k], b.meta[k], k);
  });

  it("a Celeriac client reads a Python task's PROGRESS states while it runs", async (t) => {
    if (!requireService(t, ready, 'redis-server and python3-celery')) return;
    const { createApp } = await import('../../../src/client/app.ts');
    const app = createApp({ brokerUrl: redis!.url(0), resultBackend: redis!.url(1), env: { CELERIAC_ENV: 'development' } });
    try {
      const res = await app.sendTask('tm.progress', [3, 0.5], {}, { queue: 'pyq' });
      const seen: string[] = [];
      const value = await res.get({ timeoutMs: 30_000, onState: (m) => seen.push(`${m.status}:${JSON.stringify(m.result)}`) });
      assert.equal(value, 'done');
      const progress = seen.filter((s) => s.startsWith('PROGRESS:'));
      assert.deepEqual(progress, [1, 2, 3].map((c) => `PROGRESS:${JSON.stringify({ current: c, total: 3 })}`), seen.join(' | '));
    } finally {
      await app.close();
    }
  });
});
