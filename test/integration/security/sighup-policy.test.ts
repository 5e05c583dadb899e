/**
 * Issue 20 #6, on a private redis-server with ACL users:
 *
 * - a reload re-runs the start-up policy: a weak password that production
 *   refuses at start is refused on reload too, and the working credentials
 *   stay;
 * - the replay-guard connection follows a rotation to another ACL user
 *   (it kept authenticating as the old user);
 * - SIGHUP sent to a prefork child no longer kills it.
 */
import assert from 'node:assert/strict';
import { writeFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { createApp, type App } from '../../../src/client/app.ts';
import { generateSigningKey } from '../../../src/codec/signing/index.ts';
import { InsecureConfigError } from '../../../src/config/policy.ts';
import { generateSecret } from '../../../src/secrets/generate.ts';
import { securityCounters } from '../../../src/observability/security-events.ts';
import { startCeleriacWorker, type CeleriacWorkerProcess } from '../../helpers/celeriac-worker.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { requireService, sleep } from '../../helpers/services.ts';
import { awkwardPassword, clientList, eventually, memoryLogger, tempDir } from './support.ts';

const SECURE_TASKS = new URL('../security-messages/apps/secure_tasks.ts', import.meta.url).pathname;
const ok = hasRedisServer();
const ring = generateSigningKey('ed25519', 'hup-k1');

function rewrite(path: string, text: string): void {
  writeFileSync(`${path}.new`, `${text}\n`, { mode: 0o600 });
  renameSync(`${path}.new`, path);
}

describe('SIGHUP: policy, replay-guard user, prefork children (issue 20 #6)', () => {
  const tmp = tempDir('hup');
  let redis: RedisServer | undefined;
  let admin: Redis;
  const apps: App[] = [];
  const workers: CeleriacWorkerProcess[] = [];
  const users: Array<{ user: string; password: string }> = [];
  const url = (u: { user: string; password: string }, db: number): string => `redis://${u.user}:${u.password}@127.0.0.1:${redis!.port}/${db}`;

  before(async () => {
    if (!ok) return;
    redis = await startRedisServer({ password: awkwardPassword() });
    admin = redis.client();
    for (const name of ['hup-a', 'hup-b']) {
      const s = await generateSecret('redis-acl', { user: name, role: 'worker', db: 2 });
      const byFile = Object.fromEntries(s.items.map((i) => [i.fileName, i.value]));
      assert.equal(await admin.call(...(byFile['redis-acl-setuser.txt']!.split(' ') as [string, ...string[]])), 'OK');
      users.push({ user: name, password: byFile['redis-password']! });
    }
  });
  after(async () => {
    await Promise.all(apps.map((a) => a.close()));
    await Promise.all(workers.map((w) => w.stop()));
    await redis?.stop();
    tmp.cleanup();
  });

  it('a reload to a weak password is refused by the policy; the current credentials stay', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    const file = join(tmp.dir, 'broker-url');
    rewrite(file, url(users[0]!, 0));
    const env = { NODE_ENV: 'production', CELERIAC_BROKER_URL_FILE: file, CELERIAC_UNSAFE_ALLOW_PLAINTEXT: '1', CELERIAC_UNSAFE_ACCEPT_UNSIGNED: '1' };
    const app = createApp({ env, logger: memoryLogger('warn').logger });
    apps.push(app);
    await app.broker();
    // Redis would even accept it: the operator set a weak password for the user.
    await admin.acl('SETUSER', 'hup-a', '>passwordpassword');
    rewrite(file, `redis://hup-a:passwordpassword@127.0.0.1:${redis!.port}/0`);
    const refusals = securityCounters().policy_refusal ?? 0;
    await assert.rejects(app.reloadCredentials(), (e: unknown) => e instanceof InsecureConfigError && /\[CEL-011\] brokerUrl/.test(e.message));
    assert.equal(securityCounters().policy_refusal, refusals + 1);
    assert.equal(app.settings.brokerUrl, url(users[0]!, 0), 'the working URL is kept');
    await app.sendTask('tasks.add', [1, 2]); // still connected as before
    await admin.acl('SETUSER', 'hup-a', '<passwordpassword');
  });

  it('the replay-guard connection switches to the new ACL user; SIGHUP to a prefork child does not kill it', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    const file = join(tmp.dir, 'worker-broker-url');
    rewrite(file, url(users[0]!, 2));
    const worker = await startCeleriacWorker({
      module: SECURE_TASKS,
      args: ['-c', '2', '--processes', '1'],
      env: { CELERIAC_BROKER_URL_FILE: file, CELERIAC_RESULT_BACKEND: url(users[0]!, 3), CELERIAC_VERIFY_KEYS: ring.verifyingLine },
    });
    workers.push(worker);
    const client = createApp({ brokerUrl: url(users[0]!, 2), resultBackend: url(users[0]!, 3), securitySigningKeys: ring.signingLine, env: { NODE_ENV: 'test' }, logger: memoryLogger('warn').logger });
    apps.push(client);
    const first = (await (await client.sendTask('tasks.sleep', [0])).get({ timeoutMs: 15_000 })) as { pid: number };
    const guardUser = async (): Promise<string[]> => (await clientList(admin)).filter((c) => c.name === 'celeriac:replay-guard').map((c) => c.user!);
    assert.deepEqual(await guardUser(), ['hup-a'], 'the replay guard connected (first signed task)');

    // Rotate to another user.
    rewrite(file, url(users[1]!, 2));
    process.kill(worker.pid, 'SIGHUP');
    await eventually(async () => (await guardUser()).join() === 'hup-b', 10_000, 'the replay-guard connection authenticated as hup-b');

    // SIGHUP straight to the prefork child: it reloads (nothing changed) and keeps running.
    process.kill(first.pid, 'SIGHUP');
    await sleep(1000);
    assert.doesNotThrow(() => process.kill(first.pid, 0), 'the child is alive');
    const again = (await (await client.sendTask('tasks.sleep', [0])).get({ timeoutMs: 15_000 })) as { pid: number };
    assert.equal(again.pid, first.pid, 'the same child ran the next task');
    assert.doesNotMatch(worker.output(), /child .* (exited|died|lost)/i);
  });
});
