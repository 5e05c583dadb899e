/**
 * Issue 20 #8 (CEL-020): `celeriac worker` started by root in production
 * ran the app as root without a word. It is now refused before the app
 * module is loaded (together with every other refusal the environment
 * shows), and `--uid/--gid` drop to an unprivileged user before the app
 * module is loaded, so tasks (in prefork children too) never run as root.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createApp, type App } from '../../../src/client/app.ts';
import { evaluateProcessIdentity } from '../../../src/security/privileges.ts';
import { startCeleriacWorker, type CeleriacWorkerProcess } from '../../helpers/celeriac-worker.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { requireService } from '../../helpers/services.ts';
import { memoryLogger, runCli, tempDir } from './support.ts';

const APP = new URL('./apps/identity-tasks.ts', import.meta.url).pathname;
const isRoot = process.geteuid?.() === 0;
const NOBODY = 65534;

describe('CEL-020 rule', () => {
  it('production refuses root without --uid; development and the opt-out warn; --uid satisfies it', () => {
    const base = { mode: 'production' as const, euid: 0, dropTo: false, allowRoot: false };
    assert.deepEqual(evaluateProcessIdentity(base).refusals.map((f) => f.id), ['CEL-020']);
    assert.match(evaluateProcessIdentity(base).refusals[0]!.fix, /--uid USER/);
    assert.deepEqual(evaluateProcessIdentity({ ...base, dropTo: true }), { refusals: [], warnings: [] });
    assert.equal(evaluateProcessIdentity({ ...base, allowRoot: true }).warnings.length, 1);
    assert.equal(evaluateProcessIdentity({ ...base, mode: 'development' }).warnings.length, 1);
    assert.deepEqual(evaluateProcessIdentity({ ...base, euid: 1000 }), { refusals: [], warnings: [] });
    assert.match(evaluateProcessIdentity({ ...base, euid: 1000, allowRoot: true }).warnings[0]!.message, /does not run as root/);
  });
});

describe('celeriac worker as root (issue 20 #8)', () => {
  const ok = hasRedisServer() && isRoot;
  const tmp = tempDir('root');
  let redis: RedisServer | undefined;
  let worker: CeleriacWorkerProcess | undefined;
  let client: App | undefined;
  before(async () => {
    if (ok) redis = await startRedisServer();
  });
  after(async () => {
    await client?.close();
    await worker?.stop();
    await redis?.stop();
    tmp.cleanup();
  });

  it('production: refused before the app module loads, with the other refusals of the environment', async (t) => {
    if (!isRoot) return t.skip('the test runs as root in CI');
    const marker = join(tmp.dir, 'loaded');
    const r = await runCli(['worker', '-A', APP, '-P', 'solo'], { NODE_ENV: 'production', CELERIAC_ENV: '', CELERIAC_UNSAFE_ALLOW_ROOT: '', CELERIAC_BROKER_URL: 'redis://127.0.0.1:6399/0', IDENTITY_MARKER: marker });
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stderr, /\[CEL-020\] --uid/);
    assert.match(r.stderr, /\[CEL-003\] brokerUrl/, 'the other refusals come in the same start');
    assert.equal(existsSync(marker), false, 'the app module was never loaded as root');
  });

  it('--uid/--gid: the app and its tasks (prefork children too) run as that user', async (t) => {
    if (!requireService(t, ok, 'redis-server, as root')) return;
    worker = await startCeleriacWorker({ module: APP, args: ['-c', '2', '--processes', '1', '--uid', String(NOBODY), '--gid', String(NOBODY)], env: { CELERIAC_BROKER_URL: redis!.url(0), CELERIAC_RESULT_BACKEND: redis!.url(1) } });
    client = createApp({ brokerUrl: redis!.url(0), resultBackend: redis!.url(1), env: { NODE_ENV: 'test' }, logger: memoryLogger('warn').logger });
    const who = (await (await client.sendTask('tasks.whoami')).get({ timeoutMs: 20_000 })) as { uid: number; euid: number; gid: number; groups: number[]; pid: number };
    assert.equal(who.uid, NOBODY);
    assert.equal(who.euid, NOBODY);
    assert.equal(who.gid, NOBODY);
    assert.deepEqual(who.groups, [NOBODY]);
    assert.notEqual(who.pid, worker.pid, 'ran in a prefork child');
    assert.doesNotMatch(worker.output(), /CEL-020/);
  });
});
