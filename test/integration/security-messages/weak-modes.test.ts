/**
 * Issue 20 #9: documented weak modes that still ran replays.
 *
 * - Body-only trust for Python producers (`securityAcceptBodyOnlyFrom`):
 *   an exact copy of a body-only signed message ran twice. Celery signs
 *   with RSA-PSS (random salt), so the signed body names one send: a copy
 *   is now refused as a replay. (A relabel cannot be detected; that stays a
 *   warning at every start, as a CEL-007 finding.)
 * - RabbitMQ with no Redis backend: replay state was per process, so
 *   copies of one signed message ran once in every prefork child. The
 *   default store is now a SQLite file shared by the worker processes of
 *   the machine.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createApp, type App } from '../../../src/client/app.ts';
import { generateSigningKey, signCeleryAuth } from '../../../src/codec/signing/index.ts';
import { JSON_SERIALIZER } from '../../../src/codec/serializers.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { buildTaskMessage } from '../../../src/protocol/task-message.ts';
import { newId } from '../../../src/protocol/ids.ts';
import { startCeleriacWorker, type CeleriacWorkerProcess } from '../../helpers/celeriac-worker.ts';
import { requireService, sleep } from '../../helpers/services.ts';
import { createTestVhost, hasRabbitmq, type TestVhost } from '../amqp/support/rabbit.ts';
import { tempDir } from '../security/support.ts';
import { cloneWire, makeRsaSigner, memoryServer, until, type MemoryServer, type RsaSigner } from './helpers.ts';

const MARK_TASKS = new URL('./apps/mark_tasks.ts', import.meta.url).pathname;

describe('body-only signatures: exact copies are replays (issue 20 #9)', () => {
  let server: MemoryServer;
  let rsa: RsaSigner;
  before(async () => {
    rsa = await makeRsaSigner('body-only-replay');
    server = memoryServer();
  });
  after(async () => {
    await server.close();
    rsa.cleanup();
  });

  it('a copy of a body-only message is dead-lettered; a new send of the same call runs', async () => {
    const lenient = server.app({ taskSerializer: 'auth', securityKey: rsa.keyPath, securityCertificate: rsa.certPath, securityCertStore: rsa.storeDir, securityAcceptBodyOnlyFrom: [rsa.signerId] });
    let runs = 0;
    lenient.app.task('tasks.add', (a: number, b: number) => {
      runs++;
      return a + b;
    });
    await server.worker(lenient.app);
    const bodyOnly = (id: string) => {
      const m = buildTaskMessage({ task: 'tasks.add', id, args: [3, 4], kwargs: {} }, JSON_SERIALIZER);
      return { ...m, contentType: 'application/data', contentEncoding: 'utf-8', body: signCeleryAuth(m.body, 'application/json', 'utf-8', { key: rsa.certified.key.privateKey, cert: rsa.certified.certificate.x509, layout: 'celery-5.2' }) };
    };
    const original = bodyOnly('body-replay-1');
    await lenient.broker.publish('celery', cloneWire(original));
    assert.equal(await lenient.app.asyncResult('body-replay-1').get({ timeoutMs: 5000 }), 7);
    await lenient.broker.publish('celery', cloneWire(original));
    await until(async () => (await lenient.broker.deadLetters('celery')).length === 1, 5000, 'the copy dead-lettered');
    assert.match((await lenient.broker.deadLetters('celery'))[0]!.reason, /replayed message/);
    // Python re-sending the same call signs anew (random PSS salt): not a replay.
    await lenient.broker.publish('celery', bodyOnly('body-replay-2'));
    assert.equal(await lenient.app.asyncResult('body-replay-2').get({ timeoutMs: 5000 }), 7);
    assert.equal(runs, 2);
    const warning = lenient.logs.find((l) => l.securityEvent === 'policy_warning' && l.setting === 'securityAcceptBodyOnlyFrom');
    assert.match(String(warning?.reason), /relabel/);
    assert.equal(warning?.id, 'CEL-007');
  });
});

describe('RabbitMQ without Redis: one replay store for the processes of a machine (issue 20 #9)', () => {
  const ok = hasRabbitmq();
  const tmp = tempDir('weak-amqp');
  const ring = generateSigningKey('ed25519', 'weak-amqp-k1');
  let vh: TestVhost | undefined;
  let worker: CeleriacWorkerProcess | undefined;
  let client: App | undefined;
  after(async () => {
    await client?.close();
    await worker?.stop();
    await vh?.delete();
    tmp.cleanup();
  });

  it('copies of one signed message run once across prefork children', async (t) => {
    if (!requireService(t, ok, 'RabbitMQ')) return;
    vh = await createTestVhost('weakmodes');
    const marks = join(tmp.dir, 'marks');
    writeFileSync(marks, '');
    worker = await startCeleriacWorker({
      module: MARK_TASKS,
      args: ['-c', '4', '--processes', '3', '--prefetch-multiplier', '1'],
      env: { CELERIAC_BROKER_URL: vh.url(), CELERIAC_RESULT_BACKEND: '', CELERIAC_VERIFY_KEYS: ring.verifyingLine, MARKS: marks, CELERIAC_SECURITY_REPLAY_FILE: join(tmp.dir, 'replay.db') },
    });
    assert.ok(worker.logs().some((l) => l.securityEvent === 'policy_warning' && /this machine only/.test(String(l.reason))), 'the per-machine scope is stated at start');
    client = createApp({ brokerUrl: vh.url(), securitySigningKeys: ring.signingLine, env: { NODE_ENV: 'test' }, logger: createLogger({ level: 'silent' }) });
    const broker = await client.broker();
    const m = client.buildMessage({ task: 'tasks.mark', id: newId(), args: ['once'], kwargs: {} });
    await broker.publishMany(Array.from({ length: 12 }, () => ({ queue: 'celery', message: cloneWire(m) })));
    await until(() => worker!.logs().filter((l) => l.securityEvent === 'replayed_message').length === 11, 20_000, 'eleven copies refused');
    await sleep(500);
    const runs = readFileSync(marks, 'utf8').split('\n').filter(Boolean);
    assert.equal(runs.length, 1, runs.join('; '));
  });
});
