/**
 * Bad input pushed straight onto a Redis queue, in kombu's envelope: each
 * message is logged with its id, dead-lettered to `celery.dlq`, and the
 * `celeriac worker` process keeps serving.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createApp, type App } from '../../../src/client/app.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { newId } from '../../../src/protocol/ids.ts';
import { startCeleriacWorker, type CeleriacWorkerProcess } from '../../helpers/celeriac-worker.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { requireService, waitFor } from '../../helpers/services.ts';

function envelope(id: string, over: { body?: string; contentType?: string; headers?: Record<string, unknown> } = {}): string {
  const headers = { lang: 'py', task: 'tasks.add', id, shadow: null, eta: null, expires: null, group: null, group_index: null, retries: 0, timelimit: [null, null], root_id: id, parent_id: null, argsrepr: '(1, 1)', kwargsrepr: '{}', origin: 'gen1@test', ignore_result: false, ...over.headers };
  const body = over.body ?? '[[1, 1], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]';
  return JSON.stringify({
    body: Buffer.from(body, 'latin1').toString('base64'),
    'content-encoding': 'utf-8',
    'content-type': over.contentType ?? 'application/json',
    headers,
    properties: { correlation_id: id, reply_to: '', delivery_mode: 2, delivery_info: { exchange: '', routing_key: 'celery' }, priority: 0, body_encoding: 'base64', delivery_tag: newId() },
  });
}

describe('bad input to a celeriac worker over Redis', () => {
  const ok = hasRedisServer();
  let redis: RedisServer | undefined;
  let worker: CeleriacWorkerProcess | undefined;
  let app: App | undefined;

  before(async () => {
    if (!ok) return;
    redis = await startRedisServer();
    worker = await startCeleriacWorker({ env: { CELERIAC_BROKER_URL: redis.url(0), CELERIAC_RESULT_BACKEND: redis.url(1) }, args: ['-c', '2'] });
    app = createApp({ brokerUrl: redis.url(0), resultBackend: redis.url(1), logger: createLogger({ level: 'warn' }) });
  });
  after(async () => {
    await app?.close();
    await worker?.stop();
    await redis?.stop();
  });

  it('dead-letters each bad message with a logged id and reason, runs v1, keeps serving', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    const ids = { json: newId(), pickle: newId(), shape: newId(), unknown: newId(), v1: newId() };
    const r = redis!.client(0);
    await r.lpush('celery', envelope(ids.json, { body: '[[1, 1], {"oops"' }));
    await r.lpush('celery', envelope(ids.pickle, { contentType: 'application/x-python-serialize', body: '\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00K\x01.' }));
    await r.lpush('celery', envelope(ids.shape, { body: '{"args": "not a list"}' }));
    await r.lpush('celery', envelope(ids.unknown, { headers: { task: 'tasks.unknown_name' } }));
    // Protocol v1: no task header, everything in the body.
    await r.lpush(
      'celery',
      JSON.stringify({
        body: Buffer.from(JSON.stringify({ task: 'tasks.add', id: ids.v1, args: [20, 22], kwargs: {}, retries: 0, eta: null, expires: null, utc: true, callbacks: null, errbacks: null, timelimit: [null, null], taskset: null, chord: null })).toString('base64'),
        'content-encoding': 'utf-8',
        'content-type': 'application/json',
        headers: {},
        properties: { correlation_id: ids.v1, reply_to: '', delivery_mode: 2, delivery_info: { exchange: '', routing_key: 'celery' }, priority: 0, body_encoding: 'base64', delivery_tag: newId() },
      }),
    );
    assert.equal(await app!.asyncResult(ids.v1).get({ timeoutMs: 10_000 }), 42);
    await waitFor(async () => (await r.llen('celery.dlq')) === 4, 10_000, 'four dead letters');
    const dead = (await r.lrange('celery.dlq', 0, -1)).map((d) => JSON.parse(d) as { reason: string; queue: string; payload: string });
    const reasonFor = (id: string): string => dead.find((d) => d.payload.includes(id))!.reason;
    assert.match(reasonFor(ids.json), /invalid JSON/);
    assert.match(reasonFor(ids.pickle), /application\/x-python-serialize.*not accepted/);
    assert.match(reasonFor(ids.shape), /unknown message format|not \[args, kwargs, embed\]/);
    assert.match(reasonFor(ids.unknown), /unregistered task tasks\.unknown_name/);
    for (const id of [ids.json, ids.pickle, ids.shape, ids.unknown]) {
      await waitFor(() => worker!.logs().some((l) => l.level === 50 && l.id === id), 5000, `an error log line with id ${id}`);
    }
    await assert.rejects(app!.asyncResult(ids.unknown).get({ timeoutMs: 5000 }), { excType: 'NotRegistered' });
    // Still serving.
    assert.equal(await (await app!.sendTask('tasks.add', [2, 2])).get({ timeoutMs: 10_000 }), 4);
    assert.equal(await r.hlen('unacked'), 0, 'nothing left unacknowledged');
  });
});
