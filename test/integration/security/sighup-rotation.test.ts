/**
 * Secret rotation on SIGHUP (CEL-012): a `celeriac worker` process consumes
 * a steady stream of tasks as a Redis ACL user over TLS, the broker URL
 * from a `_FILE` secret and the result backend URL with a `${file:…}`
 * password reference. Mid-stream the operator rotates: `ACL SETUSER <user>
 * resetpass >NEW`, rewrites both files, sends SIGHUP; then every existing
 * connection of the user is killed (`CLIENT KILL USER`), so the worker must
 * reconnect with the new secret. The worker keeps consuming, every task of
 * the stream completes exactly once, `secret_reloaded` is logged, and no
 * authentication failure happens.
 */
import assert from 'node:assert/strict';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { createApp, type App } from '../../../src/client/app.ts';
import type { AsyncResult } from '../../../src/client/result.ts';
import { startCeleriacWorker, type CeleriacWorkerProcess } from '../../helpers/celeriac-worker.ts';
import type { TestPki } from '../../helpers/pki.ts';
import { hasRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { requireService, sleep } from '../../helpers/services.ts';
import { awkwardPassword, clientList, eventually, memoryLogger, runCli, startTlsRedis, tempDir, testPki, tlsUrl } from './support.ts';

const ok = hasRedisServer();
const MODULE = new URL('./apps/rotation-tasks.ts', import.meta.url).pathname;

/** Write a secret file the way an orchestrator does: a new file, renamed into place. */
function rewrite(path: string, text: string): void {
  writeFileSync(`${path}.new`, `${text}\n`, { mode: 0o600 });
  renameSync(`${path}.new`, path);
}

describe('SIGHUP credential rotation of a running worker', () => {
  const adminPassword = awkwardPassword();
  const tmp = tempDir('rotation');
  let pki: TestPki;
  let redis: RedisServer | undefined;
  let admin: Redis;
  let client: App | undefined;
  const workers: CeleriacWorkerProcess[] = [];

  before(async () => {
    if (!ok) return;
    pki = await testPki(tmp.dir);
    redis = await startTlsRedis(pki, { password: adminPassword });
    admin = redis.client();
    // The producer connects as another user (the admin), whose connections are not killed.
    const q = `ssl_ca_certs=${encodeURIComponent(pki.ca)}`;
    client = createApp({ brokerUrl: tlsUrl(redis, { password: adminPassword }, 0, q), resultBackend: tlsUrl(redis, { password: adminPassword }, 1, q), logger: memoryLogger('warn').logger });
  });
  after(async () => {
    await client?.close();
    for (const w of workers) await w.stop();
    await redis?.stop();
    tmp.cleanup();
  });

  async function rotationUnderLoad(pool: 'solo' | 'prefork', options: { recoverMs?: number; badSecret?: boolean } = {}): Promise<void> {
    const recoverMs = options.recoverMs ?? 20_000;
    // An ACL user as the operator makes it.
    const user = `celeriac-rot-${pool}${options.badSecret ? '-bad' : ''}`;
    const out = join(tmp.dir, `acl-${user}`);
    const gen = await runCli(['secrets', 'generate', 'redis-acl', '--user', user, '--format', 'file', '--out', out], {});
    assert.equal(gen.code, 0, gen.stderr);
    const oldPassword = readFileSync(join(out, 'redis-password'), 'utf8').trim();
    const setuser = readFileSync(join(out, 'redis-acl-setuser.txt'), 'utf8').trim();
    assert.equal(await admin.call(...(setuser.split(' ') as [string, ...string[]])), 'OK');

    const q = `ssl_cert_reqs=required&ssl_ca_certs=${encodeURIComponent(pki.ca)}`;
    const brokerFile = join(tmp.dir, `${user}-broker-url`);
    const passwordFile = join(tmp.dir, `${user}-redis-password`);
    const marks = join(tmp.dir, `${user}-marks`);
    rewrite(brokerFile, tlsUrl(redis!, { user, password: oldPassword }, 0, q));
    rewrite(passwordFile, oldPassword);
    writeFileSync(marks, '');
    const worker = await startCeleriacWorker({
      module: MODULE,
      args: ['-P', pool, '-c', '4'],
      env: {
        CELERIAC_BROKER_URL_FILE: brokerFile,
        CELERIAC_RESULT_BACKEND: `rediss://${user}:\${file:${passwordFile}}@127.0.0.1:${redis!.tlsPort}/1?${q}`,
        CELERIAC_TEST_MARKS: marks,
        CELERIAC_VISIBILITY: '5',
      },
    });
    workers.push(worker);
    const connectionsBefore = (await clientList(admin, user)).map((c) => c.id);
    assert.ok(connectionsBefore.length >= 2, 'the worker is connected as the ACL user');

    // A steady stream: one task every 10 ms until told to stop.
    const sent: Array<{ i: number; result: AsyncResult<number> }> = [];
    let streaming = true;
    const stream = (async () => {
      for (let i = 0; streaming; i++) {
        sent.push({ i, result: (await client!.sendTask('rot.mark', [i])) as AsyncResult<number> });
        await sleep(10);
      }
    })();
    const done = (): number => readFileSync(marks, 'utf8').split('\n').filter(Boolean).length;
    try {
      await eventually(() => done() >= 50, 20_000, '50 tasks done before the rotation');

      // Rotate: new password in Redis and in both files, SIGHUP, then kill the worker's connections.
      // (badSecret: the files get a password Redis does not know — a typo, or files rewritten before the
      // ACL change — so the reload must fail and the working credentials stay.)
      const newPassword = awkwardPassword();
      if (!options.badSecret) await admin.acl('SETUSER', user, 'resetpass', `>${newPassword}`);
      rewrite(brokerFile, tlsUrl(redis!, { user, password: newPassword }, 0, q));
      rewrite(passwordFile, newPassword);
      const logsBefore = worker.logs().length;
      process.kill(worker.pid, 'SIGHUP');
      if (options.badSecret) {
        await eventually(() => worker.logs().slice(logsBefore).some((l) => /credential reload failed/.test(String(l.msg))), 10_000, 'the failed reload in the worker log');
        const failed = worker.logs().slice(logsBefore).find((l) => /credential reload failed/.test(String(l.msg)))!;
        assert.equal(failed.level, 50);
        assert.match(JSON.stringify(failed), /new credentials .* were refused: wrong username or password; the current ones are kept/);
        assert.ok(!worker.output().includes(newPassword) && !worker.output().includes(encodeURIComponent(newPassword)), 'the refused secret is not logged');
        assert.ok(!worker.logs().slice(logsBefore).some((l) => l.securityEvent === 'secret_reloaded'));
      } else {
        await eventually(() => worker.logs().slice(logsBefore).some((l) => l.securityEvent === 'secret_reloaded'), 10_000, 'secret_reloaded in the worker log');
        const reloaded = worker.logs().slice(logsBefore).find((l) => l.securityEvent === 'secret_reloaded')!;
        assert.equal(reloaded.level, 30);
        assert.match(String(reloaded.reason), /broker and result backend/);
      }
      const killed = Number(await admin.client('KILL', 'USER', user));
      assert.ok(killed >= 2, `killed ${killed} connections of ${user}`);
      const doneAtKill = done();

      // The old secret is dead (or, with badSecret, still the only one); the worker comes back with the right one and keeps consuming.
      const probe = new Redis({ host: '127.0.0.1', port: redis!.tlsPort!, username: user, password: oldPassword, tls: { ca: readFileSync(pki.ca) }, lazyConnect: true, retryStrategy: () => null });
      probe.on('error', () => undefined);
      if (options.badSecret) await probe.connect();
      else await assert.rejects(probe.connect());
      probe.disconnect();
      await eventually(() => done() >= doneAtKill + 50, recoverMs, '50 more tasks after the connections were killed');
      await eventually(async () => (await clientList(admin, user)).some((c) => c.name === 'celeriac:broker'), 10_000, 'the worker reconnected');
    } finally {
      streaming = false;
      await stream;
    }

    // Every task of the stream completes, exactly once.
    const results = await Promise.all(sent.map((s) => s.result.get({ timeoutMs: 30_000 }))).catch((err: unknown) => {
      // Say which tasks never ran (or ran without a result) and what the worker logged.
      const ranSoFar = new Set(readFileSync(marks, 'utf8').split('\n').filter(Boolean).map((l) => Number(l.split(' ')[0])));
      const notRun = sent.filter((s) => !ranSoFar.has(s.i)).map((s) => s.i);
      const warnings = worker.logs().filter((l) => Number(l.level) >= 40 && !l.securityEvent);
      throw new Error(`${String(err)}; never ran: [${notRun.join(', ')}] of ${sent.length}; worker warnings: ${JSON.stringify(warnings).slice(0, 4000)}`);
    });
    assert.deepEqual(results, sent.map((s) => s.i));
    const ran = readFileSync(marks, 'utf8').split('\n').filter(Boolean).map((l) => Number(l.split(' ')[0]));
    const counts = new Map<number, number>();
    for (const i of ran) counts.set(i, (counts.get(i) ?? 0) + 1);
    const twice = [...counts].filter(([, n]) => n > 1).map(([i]) => i);
    const missing = sent.filter((s) => !counts.has(s.i)).map((s) => s.i);
    assert.deepEqual({ twice, missing }, { twice: [], missing: [] }, `${sent.length} tasks sent`);
    assert.equal(ran.length, sent.length);

    // After the rotation: connections are new, none failed to authenticate.
    const after = await clientList(admin, user);
    assert.ok(after.length >= 2 && after.every((c) => !connectionsBefore.includes(c.id)), 'all connections are new ones');
    const authFailures = worker.logs().filter((l) => l.securityEvent === 'auth_failure');
    assert.deepEqual(authFailures, [], 'no reconnect used the old password');
    const polling = worker.output().includes('client tracking unavailable');
    assert.equal(polling, false, 'idle wake-up (CLIENT TRACKING) still works after the reconnect');
    assert.equal(await admin.hlen('unacked'), 0, 'nothing left unacknowledged');
    // Both runs consume the same queue: this worker must be gone before the next one starts.
    assert.equal(await worker.stop(), 0);
  }

  it('solo pool: keeps consuming through the rotation, no task lost or run twice', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    await rotationUnderLoad('solo');
  });

  it('a new secret that Redis refuses is not taken: the reload fails loudly, the worker keeps the working one', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    await rotationUnderLoad('solo', { badSecret: true });
  });

  // The supervisor holds no broker connection: it forwards SIGHUP to the children that consume.
  it('prefork pool: keeps consuming through the rotation, no task lost or run twice', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    await rotationUnderLoad('prefork', { recoverMs: 8000 });
  });
});
