/**
 * Python Celery 5.2.6 client → Celeriac worker, on a private Redis.
 * Python's own AsyncResult.get() reads what the Celeriac worker stored.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startCeleriacWorker, type CeleriacWorkerProcess } from '../../helpers/celeriac-worker.ts';
import { decodeJsonText } from '../../../src/codec/json.ts';
import { pyClient, pyScript } from '../../helpers/python-celery.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { hasPythonCelery, requireService } from '../../helpers/services.ts';

describe('Python client → Celeriac worker (Redis)', () => {
  let redis: RedisServer | undefined;
  let worker: CeleriacWorkerProcess | undefined;
  let msgpackWorker: CeleriacWorkerProcess | undefined;
  let B: string[] = [];
  let BM: string[] = [];
  const ready = hasRedisServer() && hasPythonCelery();

  before(async () => {
    if (!ready) return;
    redis = await startRedisServer();
    B = ['--broker', redis.url(0), '--backend', redis.url(1)];
    BM = ['--broker', redis.url(2), '--backend', redis.url(3)];
    worker = await startCeleriacWorker({ env: { CELERIAC_BROKER_URL: redis.url(0), CELERIAC_RESULT_BACKEND: redis.url(1) }, args: ['-c', '4'] });
    msgpackWorker = await startCeleriacWorker({
      env: { CELERIAC_BROKER_URL: redis.url(2), CELERIAC_RESULT_BACKEND: redis.url(3), CELERIAC_SERIALIZER: 'msgpack' },
      args: ['-c', '2', '-n', 'msgpack@localhost'],
    });
  });
  after(async () => {
    await worker?.stop();
    await msgpackWorker?.stop();
    await redis?.stop();
  });

  it('add(2, 3) → 5', async (t) => {
    if (!requireService(t, ready, 'redis-server and python3-celery')) return;
    const r = await pyClient([...B, 'send', 'tasks.add', '2', '3', '--timeout', '20']);
    assert.equal(r.state, 'SUCCESS');
    assert.equal(r.result, 5);
  });

  it('keyword arguments bind by name', async (t) => {
    if (!requireService(t, ready, 'redis-server and python3-celery')) return;
    const r = await pyClient([...B, 'send', 'tasks.add', '--kwargs', '{"x": 40, "y": 2}', '--timeout', '20']);
    assert.equal(r.result, 42);
  });

  it('unicode, nested lists/dicts, None, booleans, floats and large integers survive the round trip', async (t) => {
    if (!requireService(t, ready, 'redis-server and python3-celery')) return;
    const kwargs = { name: 'Zoë', emoji: '🚀', nested: { list: [1, [2, [3, { k: 'v' }]]], none: null }, big: 9007199254740991, neg: -9007199254740991, t: true };
    const r = await pyClient([...B, 'send', 'tasks.echo', '"héllo 日本語"', 'null', '1.5', '[1, {"a": [null]}]', '--kwargs', JSON.stringify(kwargs), '--timeout', '20']);
    assert.equal(r.state, 'SUCCESS');
    assert.deepEqual(r.result, { args: ['héllo 日本語', null, 1.5, [1, { a: [null] }]], kwargs });
    const big = await pyClient([...B, 'send', 'tasks.add', '9007199254740990', '1', '--timeout', '20']);
    assert.equal(big.result, 9007199254740991);
  });

  it('a TypeScript ValueError is raised by Python as ValueError', async (t) => {
    if (!requireService(t, ready, 'redis-server and python3-celery')) return;
    const r = await pyClient([...B, 'send', 'tasks.fail', '"bad value"', '--timeout', '20']);
    assert.equal(r.state, 'FAILURE');
    assert.deepEqual(r.result, { exc_type: 'ValueError', exc_module: 'builtins', exc_message: ['bad value'] });
  });

  it('countdown delays, priority routes to kombu buckets, expired tasks are REVOKED', async (t) => {
    if (!requireService(t, ready, 'redis-server and python3-celery')) return;
    const t0 = Date.now();
    const r = await pyClient([...B, 'send', 'tasks.add', '1', '1', '--countdown', '2', '--priority', '5', '--timeout', '20']);
    assert.equal(r.result, 2);
    assert.ok(Date.now() - t0 >= 2000, 'countdown honoured');
    const revoked = await pyClient([...B, 'send', 'tasks.add', '1', '1', '--expires', '0.001', '--timeout', '20']);
    assert.equal(revoked.state, 'REVOKED');
  });

  it('retry with backoff, driven by the Celeriac task', async (t) => {
    if (!requireService(t, ready, 'redis-server and python3-celery')) return;
    const r = await pyClient([...B, 'send', 'tasks.flaky', '7', '--timeout', '20']);
    assert.equal(r.state, 'SUCCESS');
    assert.deepEqual(r.result, { x: 7, retries: 2 });
  });

  it('msgpack: task and result bodies in msgpack', async (t) => {
    if (!requireService(t, ready, 'redis-server and python3-celery')) return;
    const r = await pyClient([...BM, 'send', 'tasks.echo', '"ü"', '3', '--kwargs', '{"k": [1, 2]}', '--timeout', '20'], { CELERY_SERIALIZER: 'msgpack' });
    assert.equal(r.state, 'SUCCESS');
    assert.deepEqual(r.result, { args: ['ü', 3], kwargs: { k: [1, 2] } });
    // The stored record really is msgpack.
    const raw = await redis!.client(3).getBuffer(`celery-task-meta-${String(r.task_id)}`);
    assert.ok(raw && raw[0]! >= 0x80 && raw[0]! <= 0x8f, 'msgpack map');
  });

  it('zlib-compressed bodies and integers beyond 2^53 (json and msgpack results) cross exactly over Redis', async (t) => {
    if (!requireService(t, ready, 'redis-server and python3-celery')) return;
    const code = `
import json
from harness_tasks import app
args = [2**63 + 1, -2**63, 'zoë']
res = app.send_task('tasks.echo', args=args, kwargs={'k': 2**64 - 1}, compression='zlib').get(timeout=30)
assert res == {'args': args, 'kwargs': {'k': 2**64 - 1}}, res
print(json.dumps(res))
`;
    const expected = { args: [2n ** 63n + 1n, -(2n ** 63n), 'zoë'], kwargs: { k: 2n ** 64n - 1n } };
    const json = await pyScript(code, { CELERY_BROKER_URL: redis!.url(0), CELERY_RESULT_BACKEND: redis!.url(1) });
    assert.deepEqual(decodeJsonText(json.trim()), expected);
    const msgpack = await pyScript(code, { CELERY_BROKER_URL: redis!.url(2), CELERY_RESULT_BACKEND: redis!.url(3), CELERY_SERIALIZER: 'msgpack' });
    assert.deepEqual(decodeJsonText(msgpack.trim()), expected);
  });

  it('Python remote control ping reaches no Celeriac node yet, but does not break the worker', async (t) => {
    if (!requireService(t, ready, 'redis-server and python3-celery')) return;
    const r = await pyClient([...B, 'send', 'tasks.add', '3', '4', '--timeout', '20']);
    assert.equal(r.result, 7);
  });
});
