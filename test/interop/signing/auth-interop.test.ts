/**
 * Celery `auth` signing between real Python Celery 5.2.6 (Debian's
 * python3-celery) and Celeriac, both directions, on a private Redis, with
 * an RSA certificate generated at test time:
 *
 * - a Celeriac client (taskSerializer 'auth', 5.2 layout, plus its RSA
 *   header signature) → a Python worker configured with security_key,
 *   security_certificate, security_cert_store, task_serializer='auth',
 *   accept_content=['auth']: the task runs;
 * - a Python client with the same settings → a `celeriac worker` process:
 *   refused without `securityAcceptBodyOnlyFrom` (Celery signs the body
 *   only, so the header signature is missing), run with it.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createApp, type App } from '../../../src/client/app.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { newId } from '../../../src/protocol/ids.ts';
import { startCeleriacWorker, type CeleriacWorkerProcess } from '../../helpers/celeriac-worker.ts';
import { pyClient, startPythonWorker, type PythonWorker } from '../../helpers/python-celery.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { hasPythonCelery, requireService, waitFor } from '../../helpers/services.ts';
import { makeRsaSigner, type RsaSigner } from '../../integration/security-messages/helpers.ts';

const SECURE_TASKS = new URL('../../integration/security-messages/apps/secure_tasks.ts', import.meta.url).pathname;
const logger = createLogger({ level: 'silent' });

describe('Celery auth signing interop with Python Celery 5.2.6', () => {
  const ok = hasRedisServer() && hasPythonCelery();
  let redis: RedisServer | undefined;
  let signer: RsaSigner | undefined;
  const pyEnv = (): Record<string, string> => ({
    CELERY_SERIALIZER: 'auth',
    CELERY_SECURITY_KEY: signer!.keyPath,
    CELERY_SECURITY_CERT: signer!.certPath,
    CELERY_SECURITY_CERT_STORE: signer!.storeDir,
  });

  before(async () => {
    if (!ok) return;
    signer = await makeRsaSigner('celery-interop-signer');
    redis = await startRedisServer();
  });
  after(async () => {
    await redis?.stop();
    signer?.cleanup();
  });

  it('a Celeriac client signs tasks that a Python worker (accept_content=auth) verifies and runs', async (t) => {
    if (!requireService(t, ok, 'redis-server and python3-celery')) return;
    let py: PythonWorker | undefined;
    let app: App | undefined;
    try {
      py = await startPythonWorker({ brokerUrl: redis!.url(0), backendUrl: redis!.url(1), env: pyEnv() });
      app = createApp({
        brokerUrl: redis!.url(0),
        resultBackend: redis!.url(1),
        logger,
        env: { NODE_ENV: 'test' },
        taskSerializer: 'auth',
        securityKey: signer!.keyPath,
        securityCertificate: signer!.certPath,
        securityCertStore: signer!.storeDir,
        resultAcceptContent: ['json'],
      });
      assert.equal(await (await app.sendTask('tasks.add', [2, 3])).get({ timeoutMs: 20_000 }), 5);
      assert.deepEqual(await (await app.sendTask('tasks.echo', ['a', 1], { k: 'v' })).get({ timeoutMs: 20_000 }), { args: ['a', 1], kwargs: { k: 'v' } });
      // A retry-style message with an eta (countdown) is signed the same way.
      assert.equal(await (await app.sendTask('tasks.add', [1, 1], {}, { countdown: 1 })).get({ timeoutMs: 20_000 }), 2);
      assert.doesNotMatch(py.output(), /SecurityError|Refusing to deserialize|Can't decode message body/);
    } finally {
      await app?.close();
      await py?.stop();
    }
  });

  it("a Python client's signed tasks: refused by a Celeriac worker by default, run with securityAcceptBodyOnlyFrom", async (t) => {
    if (!requireService(t, ok, 'redis-server and python3-celery')) return;
    const base = {
      CELERIAC_BROKER_URL: redis!.url(2),
      CELERIAC_RESULT_BACKEND: redis!.url(3),
      SEC_SERIALIZER: 'auth',
      SEC_ACCEPT: 'auth',
      CELERY_SECURITY_KEY: signer!.keyPath,
      CELERY_SECURITY_CERTIFICATE: signer!.certPath,
      CELERY_SECURITY_CERT_STORE: signer!.storeDir,
    };
    const clientEnv = { ...pyEnv(), CELERY_BROKER_URL: redis!.url(2), CELERY_RESULT_BACKEND: redis!.url(3) };
    let worker: CeleriacWorkerProcess | undefined;
    try {
      // Strict (the default): the header signature is required.
      worker = await startCeleriacWorker({ module: SECURE_TASKS, env: base, args: ['-c', '2', '--processes', '1'] });
      const refusedId = newId();
      const sent = await pyClient(['send', 'tasks.add', '2', '3', '--task-id', refusedId, '--no-wait'], clientEnv);
      assert.equal(sent.task_id, refusedId);
      await waitFor(async () => (await redis!.client(2).llen('celery.dlq')) === 1, 20_000, 'the Python message to be dead-lettered');
      const dead = JSON.parse((await redis!.client(2).lindex('celery.dlq', 0))!) as { reason: string };
      assert.match(dead.reason, /missing-signature/);
      assert.ok(
        worker.logs().some((l) => l.securityEvent === 'unsigned_message' && l.messageId === refusedId && /securityAcceptBodyOnlyFrom/.test(String(l.reason))),
        'counted and logged, saying how to accept Python producers',
      );
      await worker.stop();

      // With the signer named: runs, and the weaker mode is stated at start.
      worker = await startCeleriacWorker({ module: SECURE_TASKS, env: { ...base, SEC_BODY_ONLY: signer!.signerId }, args: ['-c', '2', '--processes', '1'] });
      assert.ok(worker.logs().some((l) => l.securityEvent === 'policy_warning' && /body-only signatures/.test(String(l.reason))));
      const res = await pyClient(['send', 'tasks.add', '20', '22', '--timeout', '20'], clientEnv);
      assert.equal(res.state, 'SUCCESS');
      assert.equal(res.result, 42);
      const echo = await pyClient(['send', 'tasks.echo', 'x', '--kwargs', '{"n": 1}', '--timeout', '20'], clientEnv);
      assert.deepEqual(echo.result, { args: ['x'], kwargs: { n: 1 } });
    } finally {
      await worker?.stop();
    }
  });
});
