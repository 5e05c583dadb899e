/**
 * Send options across languages, on a private Redis: a Python Celery
 * 5.2.6 worker sees the custom headers, retries, reply_to and time limits
 * a Celeriac client sends (and enforces the time limits); a Celeriac
 * worker sees the headers a Python client sends with `headers=`.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createApp, type App } from '../../../src/client/app.ts';
import { RemoteTaskError } from '../../../src/errors.ts';
import { startCeleriacWorker, ROOT, type CeleriacWorkerProcess } from '../../helpers/celeriac-worker.ts';
import { pyScript, startPythonWorker, type PythonWorker } from '../../helpers/python-celery.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { hasPythonCelery, requireService } from '../../helpers/services.ts';
import { captureLogger } from '../../helpers/app-fixture.ts';

const TM_TASKS = `${ROOT}test/interop/apps/taskmodel_tasks.ts`;

describe('send options (Redis, Python Celery 5.2.6)', () => {
  let redis: RedisServer | undefined;
  let py: PythonWorker | undefined;
  let worker: CeleriacWorkerProcess | undefined;
  let app: App | undefined;
  const ready = hasRedisServer() && hasPythonCelery();

  before(async () => {
    if (!ready) return;
    redis = await startRedisServer();
    py = await startPythonWorker({ brokerUrl: redis.url(0), backendUrl: redis.url(1), name: 'tm-py@localhost', args: ['-Q', 'pyq', '--include', 'taskmodel_tasks'] });
    worker = await startCeleriacWorker({ module: TM_TASKS, env: { CELERIAC_BROKER_URL: redis.url(0), CELERIAC_RESULT_BACKEND: redis.url(1) }, args: ['-c', '2', '-Q', 'tsq'] });
    app = createApp({ brokerUrl: redis.url(0), resultBackend: redis.url(1), logger: captureLogger('warn').logger, env: { CELERIAC_ENV: 'development' } });
  });
  after(async () => {
    await app?.close();
    await py?.stop();
    await worker?.stop();
    await redis?.stop();
  });

  it('a Python task reads the headers, retries, reply_to, shadow and time limits a Celeriac client sent (zlib body)', async (t) => {
    if (!requireService(t, ready, 'redis-server and python3-celery')) return;
    const res = await app!.sendTask('tm.request', [], {}, {
      queue: 'pyq',
      headers: { x_tenant: 'acme' },
      retries: 2,
      replyTo: 'reply-q-7',
      shadow: 'tm.shadowed',
      timeLimit: 30,
      softTimeLimit: 20,
      compression: 'zlib',
    });
    assert.deepEqual(await res.get({ timeoutMs: 20_000 }), {
      retries: 2,
      timelimit: [30, 20],
      reply_to: 'reply-q-7',
      shadow: 'tm.shadowed',
      x_tenant: 'acme',
      headers: null,
    });
  });

  it('the Python worker enforces a per-call soft time limit sent by Celeriac', async (t) => {
    if (!requireService(t, ready, 'redis-server and python3-celery')) return;
    const t0 = Date.now();
    const res = await app!.sendTask('tasks.sleep', [5], {}, { queue: 'pyq', softTimeLimit: 1, timeLimit: 10 });
    await assert.rejects(res.get({ timeoutMs: 20_000 }), (err: unknown) => {
      assert.ok(err instanceof RemoteTaskError);
      assert.equal(err.excType, 'SoftTimeLimitExceeded');
      return true;
    });
    assert.ok(Date.now() - t0 < 4500, `stopped at the soft limit, not after the 5 s sleep (${Date.now() - t0} ms)`);
  });

  it("a Celeriac task reads the headers a Python client sent with headers=, and Celery's retries/time limits", async (t) => {
    if (!requireService(t, ready, 'redis-server and python3-celery')) return;
    const code = `
import json
from harness_tasks import app
r = app.send_task('tm.request', queue='tsq', headers={'x_tenant': 'py-acme'}, retries=3, time_limit=40, soft_time_limit=30, reply_to='py-reply')
print(json.dumps(r.get(timeout=20)))
`;
    const out = JSON.parse((await pyScript(code, { CELERY_BROKER_URL: redis!.url(0), CELERY_RESULT_BACKEND: redis!.url(1) })).trim().split('\n').pop()!) as Record<string, unknown>;
    assert.deepEqual(out, { retries: 3, timeLimit: [40, 30], replyTo: 'py-reply', task: 'tm.request', tenant: 'py-acme' });
  });
});
