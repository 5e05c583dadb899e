/**
 * Issue 20 #11: a broker password reached every prefork child's environment
 * block (`/proc/<pid>/environ`, readable for the life of the process), and
 * `-b rediss://:PW@…` was accepted in production with only a warning,
 * leaving the password in `ps`. Children now get secret variables over
 * their IPC channel (set into process.env, never into the environment
 * block), and a password in a URL flag is refused in production.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { createApp, type App } from '../../../src/client/app.ts';
import { splitSecretEnv } from '../../../src/config/env.ts';
import { startCeleriacWorker, type CeleriacWorkerProcess } from '../../helpers/celeriac-worker.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { requireService } from '../../helpers/services.ts';
import { awkwardPassword, memoryLogger, runCli } from './support.ts';

const APP = new URL('./apps/identity-tasks.ts', import.meta.url).pathname;
const ok = hasRedisServer() && process.platform === 'linux';

describe('secrets of prefork children (issue 20 #11)', () => {
  const password = awkwardPassword();
  let redis: RedisServer | undefined;
  let worker: CeleriacWorkerProcess | undefined;
  let client: App | undefined;
  before(async () => {
    if (ok) redis = await startRedisServer({ password });
  });
  after(async () => {
    await client?.close();
    await worker?.stop();
    await redis?.stop();
  });

  it('splits secret variables from the rest', () => {
    const { plain, secret } = splitSecretEnv({
      CELERIAC_BROKER_URL: 'redis://:hunter2-long-pw@h/0', CELERY_RESULT_BACKEND: 'redis://h/1', MY_API_TOKEN: 'x', DB_PASSWORD: 'y',
      OTHER_URL: 'amqp://u:pw-in-url@h//', CELERIAC_BROKER_URL_FILE: '/run/secrets/url', PATH: '/usr/bin', NODE_OPTIONS: '--max-old-space-size=100',
    });
    assert.deepEqual(Object.keys(secret).sort(), ['CELERIAC_BROKER_URL', 'CELERY_RESULT_BACKEND', 'DB_PASSWORD', 'MY_API_TOKEN', 'OTHER_URL']);
    assert.deepEqual(Object.keys(plain).sort(), ['CELERIAC_BROKER_URL_FILE', 'NODE_OPTIONS', 'PATH']);
  });

  it("the broker password is not in a child's environment block, and the child still connects", async (t) => {
    if (!requireService(t, ok, 'redis-server on Linux')) return;
    worker = await startCeleriacWorker({ module: APP, args: ['-c', '2', '--processes', '2'], env: { CELERIAC_BROKER_URL: redis!.url(0), CELERIAC_RESULT_BACKEND: redis!.url(1) } });
    client = createApp({ brokerUrl: redis!.url(0), resultBackend: redis!.url(1), env: { NODE_ENV: 'test' }, logger: memoryLogger('warn').logger });
    const pids = new Set<number>();
    for (let i = 0; i < 6 && pids.size < 2; i++) pids.add(((await (await client.sendTask('tasks.whoami')).get({ timeoutMs: 15_000 })) as { pid: number }).pid);
    assert.ok(pids.size >= 1);
    const forms = [password, encodeURIComponent(password)];
    for (const pid of pids) {
      assert.notEqual(pid, worker.pid, 'a child ran it');
      const environ = readFileSync(`/proc/${pid}/environ`, 'latin1');
      assert.ok(environ.includes('PATH='), 'read the environment block');
      for (const f of forms) assert.ok(!environ.includes(f), `child ${pid} has the password in its environment block`);
      assert.ok(!readFileSync(`/proc/${pid}/cmdline`, 'latin1').includes(forms[1]!), 'nor on its command line');
    }
  });

  it('a password in -b is refused in production (it would be in ps)', async (t) => {
    if (!requireService(t, ok, 'redis-server on Linux')) return;
    const r = await runCli(['worker', '-A', APP, '-P', 'solo', '-b', redis!.url(0)], { NODE_ENV: 'production', CELERIAC_BROKER_URL: '', CELERIAC_UNSAFE_ALLOW_ROOT: '1' });
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stderr, /\[CEL-002\] --broker/);
    assert.match(r.stderr, /_FILE/);
    assert.ok(!r.stderr.includes(password) && !r.stderr.includes(encodeURIComponent(password)));
  });
});
