/**
 * Redis ACL users (CEL-004): a user created with the `ACL SETUSER` line that
 * `celeriac secrets generate redis-acl` prints runs Celeriac's whole round
 * trip over `rediss://user:pass@…` — a `celeriac worker` process (prefork)
 * consumes, a client sends and reads results — including the parts that
 * need more than plain list commands: Lua scripts (reserve, ack,
 * dead-letter, result store), CLIENT TRACKING for idle wake-up, dead-letter
 * lists, and pub/sub result notification. Redis' ACL LOG must stay empty
 * (nothing was denied), and the consumers must really be tracking (the
 * broker falls back to polling silently, logging only "client tracking
 * unavailable"). The same user cannot run FLUSHALL, CONFIG and friends.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { createApp, type App } from '../../../src/client/app.ts';
import { newId } from '../../../src/protocol/ids.ts';
import { startCeleriacWorker, type CeleriacWorkerProcess } from '../../helpers/celeriac-worker.ts';
import type { TestPki } from '../../helpers/pki.ts';
import { hasRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { requireService, sleep } from '../../helpers/services.ts';
import { awkwardPassword, clientList, eventually, memoryLogger, runCli, startTlsRedis, tempDir, testPki, tlsUrl } from './support.ts';

const ok = hasRedisServer();

function envelope(id: string, task: string, body: string): string {
  const headers = { lang: 'py', task, id, shadow: null, eta: null, expires: null, group: null, group_index: null, retries: 0, timelimit: [null, null], root_id: id, parent_id: null, argsrepr: '()', kwargsrepr: '{}', origin: 'acl-test', ignore_result: false };
  return JSON.stringify({
    body: Buffer.from(body).toString('base64'),
    'content-encoding': 'utf-8',
    'content-type': 'application/json',
    headers,
    properties: { correlation_id: id, reply_to: '', delivery_mode: 2, delivery_info: { exchange: '', routing_key: 'celery' }, priority: 0, body_encoding: 'base64', delivery_tag: newId() },
  });
}

describe('Redis ACL user from `celeriac secrets generate redis-acl`', () => {
  const adminPassword = awkwardPassword();
  const tmp = tempDir('acl');
  let pki: TestPki;
  let redis: RedisServer | undefined;
  let admin: Redis;
  let user = '';
  let password = '';
  let url = '';
  let worker: CeleriacWorkerProcess | undefined;
  let client: App | undefined;

  before(async () => {
    if (!ok) return;
    pki = await testPki(tmp.dir);
    redis = await startTlsRedis(pki, { password: adminPassword });
    admin = redis.client();
    // The operator's steps: generate, then run the ACL SETUSER line.
    const out = join(tmp.dir, 'acl');
    const gen = await runCli(['secrets', 'generate', 'redis-acl', '--format', 'file', '--out', out], {});
    assert.equal(gen.code, 0, gen.stderr);
    user = readFileSync(join(out, 'redis-username'), 'utf8').trim();
    password = readFileSync(join(out, 'redis-password'), 'utf8').trim();
    const setuser = readFileSync(join(out, 'redis-acl-setuser.txt'), 'utf8').trim();
    assert.match(setuser, /^ACL SETUSER \S+ reset on >\S+ /);
    assert.equal(await admin.call(...(setuser.split(' ') as [string, ...string[]])), 'OK');
    await admin.acl('LOG', 'RESET');
    url = tlsUrl(redis, { user, password }, 0, `ssl_cert_reqs=required&ssl_ca_certs=${encodeURIComponent(pki.ca)}`);
    // A short visibility timeout, so the restore path (mutex, restore and dead-letter scripts) runs during the test.
    worker = await startCeleriacWorker({ env: { CELERIAC_BROKER_URL: url, CELERIAC_RESULT_BACKEND: url, CELERIAC_VISIBILITY: '4' }, args: ['-c', '2'] });
    client = createApp({ brokerUrl: url, resultBackend: url, logger: memoryLogger('warn').logger });
  });
  after(async () => {
    await client?.close();
    await worker?.stop();
    await redis?.stop();
    tmp.cleanup();
  });

  it('runs the full round trip: send, worker consumes, results read; failures, dead letters, idle wake-up — nothing denied', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    // Success and failure, each stored and read through pub/sub notification.
    assert.equal(await (await client!.sendTask('tasks.add', [2, 3])).get({ timeoutMs: 10_000 }), 5);
    await assert.rejects((await client!.sendTask('tasks.fail', ['acl boom'])).get({ timeoutMs: 10_000 }), /acl boom/);
    // Bad input is dead-lettered by the dead-letter script onto celery.dlq; an unknown task too.
    const raw = new Redis({ host: '127.0.0.1', port: redis!.tlsPort!, username: user, password, tls: { ca: readFileSync(pki.ca) }, lazyConnect: true });
    raw.on('error', () => undefined);
    try {
      await raw.connect();
      const badId = newId();
      const unknownId = newId();
      await raw.lpush('celery', envelope(badId, 'tasks.add', '[[1, 1], {"truncated"'));
      await raw.lpush('celery', envelope(unknownId, 'tasks.not_there', '[[], {}, {}]'));
      await eventually(async () => (await raw.llen('celery.dlq')) === 2, 10_000, 'two dead letters');
      await assert.rejects(client!.asyncResult(unknownId).get({ timeoutMs: 5000 }), { excType: 'NotRegistered' });
      // Deliveries of a consumer that died long ago: the restorer puts one back on its queue and
      // dead-letters one it cannot parse (onto unacked.dlq).
      const lostId = newId();
      await raw.hset('unacked', 'lost-tag', `[${envelope(lostId, 'tasks.add', '[[7, 8], {}, {}]')}, "", "celery"]`, 'garbled-tag', 'not a kombu entry');
      await raw.zadd('unacked_index', 1, 'lost-tag', 1, 'garbled-tag');
      assert.equal(await client!.asyncResult(lostId).get({ timeoutMs: 10_000 }), 15);
      await eventually(async () => (await raw.llen('unacked.dlq')) === 1, 10_000, 'the garbled entry dead-lettered');
    } finally {
      raw.disconnect();
    }
    // Idle, then woken by a new task.
    await sleep(1500);
    assert.equal(await (await client!.sendTask('tasks.add', [40, 2])).get({ timeoutMs: 10_000 }), 42);
    const many = await Promise.all(Array.from({ length: 50 }, (_, i) => client!.sendTask('tasks.add', [i, 1])));
    assert.deepEqual(await Promise.all(many.map((r) => r.get({ timeoutMs: 10_000 }))), Array.from({ length: 50 }, (_, i) => i + 1));

    // Nothing was denied to the user: Redis logs every ACL refusal (command, key or channel).
    const denied = (await admin.acl('LOG')) as unknown[];
    assert.deepEqual(denied, [], `ACL LOG: ${JSON.stringify(denied)}`);
    assert.equal(await admin.llen('unacked'), 0, 'everything acknowledged');
  });

  it('idle consumers wake by CLIENT TRACKING under that ACL (no silent fall-back to polling)', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    const out = worker!.output();
    assert.doesNotMatch(out, /client tracking unavailable/, 'the broker fell back to polling: CLIENT TRACKING was refused');
    // Per consumer: a reserver with tracking on (default mode: only keys it read), redirected to a notifier
    // subscribed to the invalidation channel.
    const clients = await clientList(admin, user);
    const notifiers = clients.filter((c) => c.name === 'celeriac:notifier');
    const reservers = clients.filter((c) => c.name === 'celeriac:reserver');
    assert.ok(reservers.length >= 1 && reservers.length === notifiers.length, `one notifier and one reserver per consumer, got ${notifiers.length} and ${reservers.length}`);
    const notifierIds = new Set(notifiers.map((n) => n.id));
    for (const r of reservers) {
      assert.match(r.flags!, /t/, `tracking flag on ${JSON.stringify(r)}`);
      assert.doesNotMatch(r.flags!, /B/, 'default mode, not broadcast');
      assert.ok(notifierIds.has(r.redir!), `invalidations redirected to a notifier: ${JSON.stringify(r)}`);
    }
    // An invalidation really arrives for a queue key (pushed by another user).
    await admin.lpush('celery', envelope(newId(), 'tasks.add', '[[1, 2], {}, {}]'));
    await eventually(async () => (await admin.llen('celery')) === 0, 5000, 'the pushed task to be taken');
    assert.deepEqual(await admin.acl('LOG'), []);
  });

  it('cannot run admin commands or touch keys outside the layout (NOPERM)', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    const c = new Redis({ host: '127.0.0.1', port: redis!.tlsPort!, username: user, password, tls: { ca: readFileSync(pki.ca) }, lazyConnect: true, maxRetriesPerRequest: 0 });
    c.on('error', () => undefined);
    await c.connect();
    try {
      const refused: Array<[string, ...string[]]> = [
        ['FLUSHALL'], ['FLUSHDB'], ['CONFIG', 'GET', 'requirepass'], ['CONFIG', 'SET', 'requirepass', 'x'], ['KEYS', '*'], ['SCAN', '0'],
        ['ACL', 'LIST'], ['ACL', 'SETUSER', 'evil', 'on', '>x', '+@all', '~*'], ['CLIENT', 'KILL', 'USER', 'default'], ['CLIENT', 'LIST'],
        ['SHUTDOWN', 'NOSAVE'], ['SCRIPT', 'FLUSH'], ['SAVE'], ['BGREWRITEAOF'], ['REPLICAOF', '127.0.0.1', '1'], ['MIGRATE', '127.0.0.1', '1', 'celery', '0', '100'],
      ];
      for (const cmd of refused) {
        await assert.rejects(c.call(...cmd), /NOPERM/, cmd.join(' '));
      }
      // Disabled by default server configuration before the ACL is even asked; refused either way.
      for (const cmd of [['DEBUG', 'SLEEP', '0'], ['MODULE', 'LIST']] as Array<[string, ...string[]]>) {
        await assert.rejects(c.call(...cmd), /NOPERM|not allowed/, cmd.join(' '));
      }
      await assert.rejects(c.set('not-a-celery-key', '1'), /NOPERM/);
      await assert.rejects(c.get('unrelated:data'), /NOPERM/);
      await assert.rejects(c.publish('some-other-channel', 'x'), /NOPERM/);
      await assert.rejects(c.eval("return redis.call('SET', KEYS[1], '1')", 1, 'outside'), /NOPERM|No permissions/);
    } finally {
      c.disconnect();
    }
    assert.ok(((await admin.acl('LOG')) as unknown[]).length > 0, 'the refusals are in the ACL LOG');
  });
});
