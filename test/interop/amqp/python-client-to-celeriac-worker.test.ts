/**
 * Python Celery 5.2.6 client → Celeriac worker over RabbitMQ (a private
 * vhost and user on the shared node), results in a private Redis. Python's
 * own AsyncResult reads what the Celeriac worker stored; canvas follow-ups
 * (chain steps, group members) are published by the Celeriac worker through
 * AMQP and picked up again.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startCeleriacWorker, type CeleriacWorkerProcess } from '../../helpers/celeriac-worker.ts';
import { pyClient } from '../../helpers/python-celery.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { hasPythonCelery, requireService } from '../../helpers/services.ts';
import { createTestVhost, hasRabbitmq, listQueues, type TestVhost } from '../../integration/amqp/support/rabbit.ts';

describe('Python client → Celeriac worker (AMQP)', () => {
  const ready = hasRabbitmq() && hasRedisServer() && hasPythonCelery();
  let vh: TestVhost | undefined;
  let redis: RedisServer | undefined;
  let worker: CeleriacWorkerProcess | undefined;
  let B: string[] = [];

  before(async () => {
    if (!ready) return;
    vh = await createTestVhost('py2ts');
    redis = await startRedisServer();
    B = ['--broker', vh.url(), '--backend', redis.url(1)];
    worker = await startCeleriacWorker({ env: { CELERIAC_BROKER_URL: vh.url(), CELERIAC_RESULT_BACKEND: redis.url(1), CELERIAC_RESULT_EXTENDED: '1' }, args: ['-c', '4', '-n', 'tsamqp@localhost'] });
  });
  after(async () => {
    await worker?.stop();
    await redis?.stop();
    await vh?.delete();
  });

  it('add(2, 3) → 5, and the queue the worker declared is the one Python declares', async (t) => {
    if (!requireService(t, ready, 'RabbitMQ, redis-server and python3-celery')) return;
    const r = await pyClient([...B, 'send', 'tasks.add', '2', '3', '--timeout', '20']);
    assert.equal(r.state, 'SUCCESS');
    assert.equal(r.result, 5);
    assert.equal(r.worker, 'tsamqp@localhost');
    const celery = (await listQueues(vh!.vhost)).find((q) => q.name === 'celery')!;
    assert.deepEqual({ durable: celery.durable, auto_delete: celery.auto_delete, arguments: celery.arguments }, { durable: true, auto_delete: false, arguments: {} });
  });

  it('kwargs, unicode, nested values, None, floats and large integers survive py-amqp field tables', async (t) => {
    if (!requireService(t, ready, 'RabbitMQ, redis-server and python3-celery')) return;
    const kwargs = { name: 'Zoë', emoji: '🚀', nested: { list: [1, [2, [3, { k: 'v' }]]], none: null }, big: 9007199254740991, t: true };
    const r = await pyClient([...B, 'send', 'tasks.echo', '"héllo 日本語"', 'null', '1.5', '[1, {"a": [null]}]', '--kwargs', JSON.stringify(kwargs), '--timeout', '20']);
    assert.equal(r.state, 'SUCCESS');
    assert.deepEqual(r.result, { args: ['héllo 日本語', null, 1.5, [1, { a: [null] }]], kwargs });
  });

  it('a Celeriac ValueError is raised by Python as ValueError', async (t) => {
    if (!requireService(t, ready, 'RabbitMQ, redis-server and python3-celery')) return;
    const r = await pyClient([...B, 'send', 'tasks.fail', '"bad value"', '--timeout', '20']);
    assert.equal(r.state, 'FAILURE');
    assert.deepEqual(r.result, { exc_type: 'ValueError', exc_module: 'builtins', exc_message: ['bad value'] });
  });

  it('countdown is honoured; expires before the countdown ends → REVOKED (expiration property set by Python)', async (t) => {
    if (!requireService(t, ready, 'RabbitMQ, redis-server and python3-celery')) return;
    const t0 = Date.now();
    const r = await pyClient([...B, 'send', 'tasks.add', '1', '1', '--countdown', '1.5', '--timeout', '20']);
    assert.equal(r.result, 2);
    assert.ok(Date.now() - t0 >= 1500, 'countdown honoured');
    const revoked = await pyClient([...B, 'send', 'tasks.add', '1', '1', '--countdown', '3', '--expires', '1', '--timeout', '20']);
    assert.equal(revoked.state, 'REVOKED');
  });

  it('retries (re-published by the Celeriac worker over AMQP) and canvas: chain and group', async (t) => {
    if (!requireService(t, ready, 'RabbitMQ, redis-server and python3-celery')) return;
    const r = await pyClient([...B, 'send', 'tasks.flaky', '7', '--timeout', '20']);
    assert.equal(r.state, 'SUCCESS');
    assert.deepEqual(r.result, { x: 7, retries: 2 });
    const chain = await pyClient([...B, 'chain', '1', '2', '3', '4', '--timeout', '20']);
    assert.equal(chain.result, 10);
    const group = await pyClient([...B, 'group', '1', '2', '3', '--timeout', '20']);
    assert.deepEqual(group.results, [2, 4, 6]);
  });
});
