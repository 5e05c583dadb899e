/**
 * Celeriac client → Python Celery 5.2.6 worker, on a private Redis.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createApp, type App } from '../../../src/client/app.ts';
import { RemoteTaskError } from '../../../src/errors.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { startPythonWorker, type PythonWorker } from '../../helpers/python-celery.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { hasPythonCelery, requireService } from '../../helpers/services.ts';

describe('Celeriac client → Python worker (Redis)', () => {
  let redis: RedisServer | undefined;
  let py: PythonWorker | undefined;
  let pyMsgpack: PythonWorker | undefined;
  let app: App | undefined;
  let appMsgpack: App | undefined;
  const ready = hasRedisServer() && hasPythonCelery();
  const logger = createLogger({ level: 'warn' });

  before(async () => {
    if (!ready) return;
    redis = await startRedisServer();
    py = await startPythonWorker({ brokerUrl: redis.url(0), backendUrl: redis.url(1) });
    pyMsgpack = await startPythonWorker({ brokerUrl: redis.url(2), backendUrl: redis.url(3), env: { CELERY_SERIALIZER: 'msgpack' }, name: 'pymsgpack@localhost' });
    app = createApp({ brokerUrl: redis.url(0), resultBackend: redis.url(1), logger });
    appMsgpack = createApp({ brokerUrl: redis.url(2), resultBackend: redis.url(3), taskSerializer: 'msgpack', resultSerializer: 'msgpack', logger });
  });
  after(async () => {
    await app?.close();
    await appMsgpack?.close();
    await py?.stop();
    await pyMsgpack?.stop();
    await redis?.stop();
  });

  it('add(2, 3) through a typed remote task handle', async (t) => {
    if (!requireService(t, ready, 'redis-server and python3-celery')) return;
    const add = app!.remoteTask<(x: number, y: number) => number>('tasks.add');
    const r = await add.delay(2, 3);
    const five: number = await r.get({ timeoutMs: 20_000 });
    assert.equal(five, 5);
    assert.equal(await r.status(), 'SUCCESS');
    assert.equal(await r.ready(), true);
    await r.forget();
    assert.equal(await r.status(), 'PENDING');
  });

  it('kwargs, unicode, nested values, null and large integers', async (t) => {
    if (!requireService(t, ready, 'redis-server and python3-celery')) return;
    const kwargs = { name: 'Zoë', emoji: '🚀', nested: { list: [1, [2, { k: null }]] }, big: 9007199254740991 };
    const r = await app!.sendTask('tasks.echo', ['héllo', '日本語', 1.5, null, true], kwargs);
    assert.deepEqual(await r.get({ timeoutMs: 20_000 }), { args: ['héllo', '日本語', 1.5, null, true], kwargs });
    const add = await app!.sendTask('tasks.add', [], { x: 1, y: 9007199254740990 });
    assert.equal(await add.get({ timeoutMs: 20_000 }), 9007199254740991);
  });

  it("Python's ValueError surfaces as RemoteTaskError with type ValueError", async (t) => {
    if (!requireService(t, ready, 'redis-server and python3-celery')) return;
    const r = await app!.sendTask('tasks.fail', ['bad value']);
    await assert.rejects(r.get({ timeoutMs: 20_000 }), (e: unknown) => {
      assert.ok(e instanceof RemoteTaskError);
      assert.equal(e.excType, 'ValueError');
      assert.equal(e.excModule, 'builtins');
      assert.deepEqual(e.excMessage, ['bad value']);
      assert.match(e.remoteTraceback ?? '', /raise ValueError/);
      return true;
    });
    const meta = await r.get({ timeoutMs: 1000, propagate: false });
    assert.deepEqual(meta, { exc_type: 'ValueError', exc_message: ['bad value'], exc_module: 'builtins' });
  });

  it('countdown and expires are honoured by Python', async (t) => {
    if (!requireService(t, ready, 'redis-server and python3-celery')) return;
    const t0 = Date.now();
    const r = await app!.sendTask('tasks.add', [1, 2], {}, { countdown: 1.5 });
    assert.equal(await r.get({ timeoutMs: 20_000 }), 3);
    assert.ok(Date.now() - t0 >= 1400);
    const expired = await app!.sendTask('tasks.add', [1, 2], {}, { expires: new Date(Date.now() - 1000) });
    await assert.rejects(expired.get({ timeoutMs: 20_000 }), { state: 'REVOKED', excType: 'TaskRevokedError' });
  });

  it('unknown task name: Python stores NotRegistered', async (t) => {
    if (!requireService(t, ready, 'redis-server and python3-celery')) return;
    await assert.rejects((await app!.sendTask('tasks.nope', [1])).get({ timeoutMs: 20_000 }), { excType: 'NotRegistered' });
  });

  it('msgpack task bodies and results', async (t) => {
    if (!requireService(t, ready, 'redis-server and python3-celery')) return;
    const r = await appMsgpack!.sendTask('tasks.echo', ['ü', 2], { k: [1, 2] });
    assert.deepEqual(await r.get({ timeoutMs: 20_000 }), { args: ['ü', 2], kwargs: { k: [1, 2] } });
  });

  it('bulk send: 200 tasks in one round trip, all answered', async (t) => {
    if (!requireService(t, ready, 'redis-server and python3-celery')) return;
    const rs = await app!.sendMany(Array.from({ length: 200 }, (_, i) => ({ name: 'tasks.add', args: [i, i] })));
    const values = await Promise.all(rs.map((r) => r.get({ timeoutMs: 30_000 })));
    assert.deepEqual(values, Array.from({ length: 200 }, (_, i) => 2 * i));
  });
});
