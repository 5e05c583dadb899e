/**
 * A Python caller of a message the Celeriac worker refuses (pickle, which
 * it never accepts; bzip2, a compression it refuses) gets FAILURE promptly
 * instead of waiting for its timeout: the worker dead-letters the message
 * and stores one FAILURE record, raised by Python as kombu's exception.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startCeleriacWorker, ROOT, type CeleriacWorkerProcess } from '../../helpers/celeriac-worker.ts';
import { pyScript } from '../../helpers/python-celery.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { hasPythonCelery, requireService } from '../../helpers/services.ts';

const TM_TASKS = `${ROOT}test/interop/apps/taskmodel_tasks.ts`;

const POISON = (options: string) => `
import json, time
from harness_tasks import app
t0 = time.time()
r = app.send_task('tasks.add', args=[1, 2], queue='tsq', ${options})
try:
    r.get(timeout=30)
    out = {'state': r.state}
except Exception as e:
    out = {'state': r.state, 'exc': [type(e).__module__, type(e).__name__, [str(a) for a in e.args]]}
out['seconds'] = time.time() - t0
print(json.dumps(out))
`;

describe('dead-lettered messages fail their Python caller promptly (Redis)', () => {
  let redis: RedisServer | undefined;
  let worker: CeleriacWorkerProcess | undefined;
  let env: Record<string, string> = {};
  const ready = hasRedisServer() && hasPythonCelery();

  before(async () => {
    if (!ready) return;
    redis = await startRedisServer();
    env = { CELERY_BROKER_URL: redis.url(0), CELERY_RESULT_BACKEND: redis.url(1) };
    worker = await startCeleriacWorker({ module: TM_TASKS, env: { CELERIAC_BROKER_URL: redis.url(0), CELERIAC_RESULT_BACKEND: redis.url(1) }, args: ['-c', '2', '-Q', 'tsq'] });
  });
  after(async () => {
    await worker?.stop();
    await redis?.stop();
  });

  for (const [what, options, module, type, reason] of [
    ['a pickled task', "serializer='pickle'", 'kombu.exceptions', 'ContentDisallowed', /content type "application\/x-python-serialize" not accepted/],
    ['a bzip2-compressed task', "compression='bzip2'", 'kombu.exceptions', 'DecodeError', /bzip2|x-bz2|compression/],
  ] as const) {
    it(`${what}: FAILURE ${type} within seconds, and the message is dead-lettered`, async (t) => {
      if (!requireService(t, ready, 'redis-server and python3-celery')) return;
      const out = JSON.parse((await pyScript(POISON(options), env)).trim().split('\n').pop()!) as { state: string; exc?: [string, string, string[]]; seconds: number };
      assert.equal(out.state, 'FAILURE', JSON.stringify(out));
      assert.equal(out.exc?.[0], module);
      assert.equal(out.exc?.[1], type);
      assert.match(out.exc?.[2][0] ?? '', /^message dead-lettered: /);
      assert.match(out.exc?.[2][0] ?? '', reason);
      assert.ok(out.seconds < 10, `FAILURE after ${out.seconds.toFixed(1)} s, not at the 30 s timeout`);
      assert.match(worker!.output(), /rejected message/);
    });
  }
});
