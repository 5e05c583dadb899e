/**
 * Issue 20 #1: the replay record must not be erasable by a principal that
 * can send tasks. A private redis-server with the two users that
 * `celeriac secrets generate redis-acl` makes: a Celeriac worker runs as
 * the worker user, a client (the attacker) as the producer user. The
 * attacker captures a signed message from the queue, lets it run, tries
 * every way the producer ACL leaves to erase or overwrite its nonce
 * (`celeriac:replay:<nonce>`), and pushes the copy again: every write is
 * refused (NOPERM) and the copy is dead-lettered as a replay, never run.
 *
 * Issue 15 item 9: a default Python Celery worker (gossip, mingle, events
 * on) and a Python client run on the same users with nothing denied in
 * Redis' ACL LOG.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { createApp, type App } from '../../../src/client/app.ts';
import { generateSigningKey } from '../../../src/codec/signing/index.ts';
import { newId } from '../../../src/protocol/ids.ts';
import { generateSecret } from '../../../src/secrets/generate.ts';
import { startCeleriacWorker, type CeleriacWorkerProcess } from '../../helpers/celeriac-worker.ts';
import { HARNESS_DIR, pyClient } from '../../helpers/python-celery.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { hasPythonCelery, PYTHON, requireService, sleep } from '../../helpers/services.ts';
import { awkwardPassword, eventually, memoryLogger } from './support.ts';

const SECURE_TASKS = new URL('../security-messages/apps/secure_tasks.ts', import.meta.url).pathname;
const ok = hasRedisServer();
const ring = generateSigningKey('ed25519', 'acl-replay-k1');

interface AclUser {
  user: string;
  password: string;
  setuser: string;
}

describe('replay store under the generated ACL users (issue 20 #1)', () => {
  let redis: RedisServer | undefined;
  let admin: Redis;
  const users: Record<'worker' | 'producer', AclUser> = {} as Record<'worker' | 'producer', AclUser>;
  const url = (u: AclUser, db = 0): string => `redis://${u.user}:${u.password}@127.0.0.1:${redis!.port}/${db}`;
  const workers: CeleriacWorkerProcess[] = [];
  const apps: App[] = [];

  before(async () => {
    if (!ok) return;
    redis = await startRedisServer({ password: awkwardPassword() });
    admin = redis.client();
    const s = await generateSecret('redis-acl', { user: 'acl-worker', producerUser: 'acl-client' });
    const byFile = Object.fromEntries(s.items.map((i) => [i.fileName, i.value]));
    users.worker = { user: byFile['redis-username']!, password: byFile['redis-password']!, setuser: byFile['redis-acl-setuser.txt']! };
    users.producer = { user: byFile['producer-redis-username']!, password: byFile['producer-redis-password']!, setuser: byFile['producer-redis-acl-setuser.txt']! };
    for (const u of Object.values(users)) assert.equal(await admin.call(...(u.setuser.split(' ') as [string, ...string[]])), 'OK');
    await admin.acl('LOG', 'RESET');
  });
  after(async () => {
    await Promise.all(apps.map((a) => a.close()));
    await Promise.all(workers.map((w) => w.stop()));
    await redis?.stop();
  });

  it('a producer cannot delete or rewrite a nonce; the captured message is refused as a replay', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    const client = createApp({ brokerUrl: url(users.producer), resultBackend: url(users.producer), securitySigningKeys: ring.signingLine, env: { NODE_ENV: 'test' }, logger: memoryLogger('warn').logger });
    apps.push(client);
    const id = newId();
    await client.sendTask('tasks.add', [20, 1], {}, { taskId: id });

    // The attacker (producer credentials) captures the signed message while it waits in the queue.
    const attacker = new Redis({ host: '127.0.0.1', port: redis!.port, username: users.producer.user, password: users.producer.password, lazyConnect: true, maxRetriesPerRequest: 0 });
    attacker.on('error', () => undefined);
    await attacker.connect();
    try {
      const captured = await attacker.lrange('celery', 0, -1);
      assert.equal(captured.length, 1);
      assert.match(captured[0]!, /celeriac_signature/);

      const worker = await startCeleriacWorker({
        module: SECURE_TASKS,
        args: ['-c', '1', '--processes', '1'],
        env: { CELERIAC_BROKER_URL: url(users.worker), CELERIAC_RESULT_BACKEND: url(users.worker), CELERIAC_VERIFY_KEYS: ring.verifyingLine },
      });
      workers.push(worker);
      assert.equal(await client.asyncResult(id).get({ timeoutMs: 15_000 }), 21);
      const nonceKeys = (await admin.keys('celeriac:replay:*')) as string[];
      assert.equal(nonceKeys.length, 1, 'one settled nonce');
      const key = nonceKeys[0]!;
      // The worker marks the nonce settled after the result is stored (held 'H<owner>' → settled 'S').
      await eventually(async () => (await admin.get(key)) === 'S', 10_000, 'the nonce settled');
      const before = await admin.get(key);

      // Every way to erase or overwrite the record that the producer's commands would allow.
      const attempts: Array<[string, () => Promise<unknown>]> = [
        ['DEL', () => attacker.del(key)],
        ['SET', () => attacker.set(key, 'H0', 'PX', 1)],
        ['PEXPIRE', () => attacker.pexpire(key, 1)],
        ['EXPIRE', () => attacker.expire(key, 1)],
        ['GET', () => attacker.get(key)],
        ['EVAL DEL', () => attacker.eval("return redis.call('DEL', KEYS[1])", 1, key)],
        ['EVAL undeclared key', () => attacker.eval("return redis.call('DEL', ARGV[1])", 0, key)],
        ['MULTI DEL', () => attacker.multi().del(key).exec().then((r) => { if (r?.[0]?.[0]) throw r[0][0]; return r; })],
        ['UNLINK', () => attacker.call('UNLINK', key)],
        ['RENAME', () => attacker.call('RENAME', key, 'celery')],
        ['FLUSHDB', () => attacker.call('FLUSHDB')],
      ];
      const allowed: string[] = [];
      for (const [name, attempt] of attempts) {
        try {
          await attempt();
          allowed.push(name);
        } catch (err) {
          assert.match(String((err as Error).message), /NOPERM|No permissions|permission|can't access|EXECABORT/i, name);
        }
      }
      assert.deepEqual(allowed, [], `the producer user could: ${allowed.join(', ')}`);
      assert.equal(await admin.get(key), before, 'the nonce record is untouched');

      // The replay: the captured copy is refused, not run again.
      await attacker.lpush('celery', captured[0]!);
      await eventually(async () => (await admin.llen('celery.dlq')) === 1, 15_000, 'the replayed copy dead-lettered');
      const dead = JSON.parse((await admin.lindex('celery.dlq', 0))!) as { reason: string };
      assert.match(dead.reason, /replayed message/);
      const ran = worker.logs().filter((l) => l.securityEvent === 'replayed_message' && l.messageId === id).length;
      assert.equal(ran, 1);
    } finally {
      attacker.disconnect();
    }
  });

  it('warns when the Redis of the replay store evicts keys (a producer filling memory could drop a nonce)', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    // The earlier case's worker shares the queue (the generated ACL grants db 0's celery queue): stop it, so this worker takes the task.
    await Promise.all(workers.splice(0).map((w) => w.stop()));
    await admin.config('SET', 'maxmemory', '512mb');
    await admin.config('SET', 'maxmemory-policy', 'allkeys-lru');
    try {
      const worker = await startCeleriacWorker({
        module: SECURE_TASKS,
        args: ['-c', '1', '--processes', '1'],
        env: { CELERIAC_BROKER_URL: url(users.worker), CELERIAC_RESULT_BACKEND: url(users.worker), CELERIAC_VERIFY_KEYS: ring.verifyingLine },
      });
      workers.push(worker);
      const client = createApp({ brokerUrl: url(users.producer), resultBackend: url(users.producer), securitySigningKeys: ring.signingLine, env: { NODE_ENV: 'test' }, logger: memoryLogger('warn').logger });
      apps.push(client);
      assert.equal(await (await client.sendTask('tasks.add', [1, 1])).get({ timeoutMs: 15_000 }), 2);
      await eventually(() => worker.logs().some((l) => l.securityEvent === 'policy_warning' && /evicts keys when full \(maxmemory-policy allkeys-lru\)/.test(String(l.reason))), 10_000, 'the eviction warning');
    } finally {
      await admin.config('SET', 'maxmemory', '0');
      await admin.config('SET', 'maxmemory-policy', 'noeviction');
    }
  });

  it('a default Python Celery worker (gossip, mingle, events) and client work with these users; nothing denied', async (t) => {
    if (!requireService(t, ok, 'redis-server') || !requireService(t, hasPythonCelery(), 'python celery')) return;
    await admin.acl('LOG', 'RESET');
    const db = 3;
    // Generated for db 3, so the fan-out channel names match.
    const s = await generateSecret('redis-acl', { user: 'py-worker', producerUser: 'py-client', db });
    const byFile = Object.fromEntries(s.items.map((i) => [i.fileName, i.value]));
    for (const f of ['redis-acl-setuser.txt', 'producer-redis-acl-setuser.txt']) assert.equal(await admin.call(...(byFile[f]!.split(' ') as [string, ...string[]])), 'OK');
    const pyUrl = (prefix: string): string => `redis://${byFile[`${prefix}redis-username`]}:${byFile[`${prefix}redis-password`]}@127.0.0.1:${redis!.port}/${db}`;
    // Exactly `celery worker` with its defaults: no --without-gossip/--without-mingle; -E for task events.
    const proc: ChildProcess = spawn(PYTHON, ['-m', 'celery', '-A', 'harness_tasks', 'worker', '-l', 'INFO', '-c', '1', '-n', 'acl-py@localhost', '-E'], {
      cwd: HARNESS_DIR,
      env: { ...process.env, PYTHONPATH: HARNESS_DIR, CELERY_BROKER_URL: pyUrl(''), CELERY_RESULT_BACKEND: pyUrl(''), PYTHONUNBUFFERED: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    proc.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise((r) => proc.once('exit', r));
    try {
      await eventually(() => /ready\./.test(out) || proc.exitCode !== null, 30_000, 'the Python worker to be ready');
      assert.equal(proc.exitCode, null, out);
      const r = await pyClient(['--broker', pyUrl('producer-'), '--backend', pyUrl('producer-'), 'send', 'tasks.add', '2', '3', '--timeout', '20']);
      assert.equal(r.state, 'SUCCESS', JSON.stringify(r));
      assert.equal(r.result, 5);
      // Gossip and heartbeats keep flowing for a moment; a denial would show in the log or the ACL LOG.
      await sleep(2500);
      assert.doesNotMatch(out, /NOPERM|No permissions/i, out);
      const denied = (await admin.acl('LOG')) as unknown[];
      assert.deepEqual(denied, [], `ACL LOG: ${JSON.stringify(denied)}`);
    } finally {
      if (proc.exitCode === null) proc.kill('SIGTERM');
      await Promise.race([exited, sleep(15_000)]);
      if (proc.exitCode === null) proc.kill('SIGKILL');
    }
  });
});
