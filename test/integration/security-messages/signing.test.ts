/**
 * Message signing through the real client and worker code paths, on the
 * in-memory broker (fast): Ed25519, HMAC and Celery `auth` round trips,
 * verify-only workers, retries and countdowns past the message TTL,
 * refusals (unsigned, tampered, untrusted, expired, lifetime past the
 * window), Python-style body-only signatures, and the production rules.
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import { createApp } from '../../../src/client/app.ts';
import { createMemoryBroker } from '../../../src/transport/memory/broker.ts';
import { generateSigningKey, SIGNATURE_HEADER, signCeleryAuth, signMessage, parseSigningKeyRing, type MessageSignatureHeader } from '../../../src/codec/signing/index.ts';
import { ConfigError } from '../../../src/errors.ts';
import { buildTaskMessage } from '../../../src/protocol/task-message.ts';
import { JSON_SERIALIZER } from '../../../src/codec/serializers.ts';
import { resetSecurityEvents, securityCounters } from '../../../src/observability/security-events.ts';
import type { ConfiguredMessageSecurity } from '../../../src/security/message-security.ts';
import { currentTask } from '../../../src/worker/context.ts';
import { captureLogger } from '../../helpers/app-fixture.ts';
import { cloneWire, collectEvents, makeRsaSigner, memoryServer, until, type MemoryServer, type RsaSigner } from './helpers.ts';

const ed = generateSigningKey('ed25519', 'ed-2025-01');
const hmac = generateSigningKey('hmac-sha256', 'hmac-2025-01');
const stranger = generateSigningKey('ed25519', 'ed-2025-01'); // same key id, different key

function sigOf(m: { headers: Record<string, unknown> }): MessageSignatureHeader {
  return m.headers[SIGNATURE_HEADER] as MessageSignatureHeader;
}

describe('message signing (memory broker)', () => {
  let server: MemoryServer;
  let rsa: RsaSigner;
  let other: RsaSigner;

  before(async () => {
    rsa = await makeRsaSigner('celeriac-signer');
    other = await makeRsaSigner('untrusted-signer');
  });
  after(() => {
    rsa.cleanup();
    other.cleanup();
  });
  beforeEach(() => {
    resetSecurityEvents();
    server = memoryServer();
  });
  afterEach(async () => {
    await server.close();
  });

  it('Ed25519: the client signs with the newest key, a verify-only worker runs the task', async () => {
    const client = server.app({ securitySigningKeys: ed.signingLine });
    const worker = server.app({ env: { CELERIAC_VERIFY_KEYS: ed.verifyingLine } });
    worker.app.task('tasks.add', (a: number, b: number) => a + b);
    await server.worker(worker.app);
    const msg = client.app.buildMessage({ task: 'tasks.add', id: 'x1', args: [1, 2], kwargs: {} });
    assert.equal(sigOf(msg).alg, 'ed25519');
    assert.equal(sigOf(msg).kid, 'ed-2025-01');
    assert.equal(msg.contentType, 'application/json');
    const r = await client.app.sendTask('tasks.add', [20, 22]);
    assert.equal(await r.get({ timeoutMs: 5000 }), 42);
    assert.equal((worker.app.security as ConfiguredMessageSecurity).description.verifying, true);
  });

  it('HMAC-SHA256 ring round trip; rotation: a worker with old and new keys accepts both', async () => {
    const newer = generateSigningKey('hmac-sha256', 'hmac-2025-02');
    const oldClient = server.app({ securitySigningKeys: hmac.signingLine });
    const newClient = server.app({ securitySigningKeys: `${hmac.signingLine}\n${newer.signingLine}` });
    const worker = server.app({ securityVerifyKeys: `${hmac.verifyingLine}\n${newer.verifyingLine}` });
    worker.app.task('tasks.add', (a: number, b: number) => a + b);
    await server.worker(worker.app);
    assert.equal(sigOf(newClient.app.buildMessage({ task: 'tasks.add', id: 'r', args: [], kwargs: {} })).kid, 'hmac-2025-02', 'the newest key signs');
    assert.equal(await (await oldClient.app.sendTask('tasks.add', [1, 1])).get({ timeoutMs: 5000 }), 2);
    assert.equal(await (await newClient.app.sendTask('tasks.add', [2, 2])).get({ timeoutMs: 5000 }), 4);
  });

  it("Celery auth: body is Celery's auth serializer AND the header is RSA-signed with the same key", async () => {
    const opts = { taskSerializer: 'auth' as const, securityKey: rsa.keyPath, securityCertificate: rsa.certPath, securityCertStore: rsa.storeDir };
    const client = server.app(opts);
    const worker = server.app(opts);
    worker.app.task('tasks.add', (a: number, b: number) => a + b);
    await server.worker(worker.app);
    const msg = client.app.buildMessage({ task: 'tasks.add', id: 'a1', args: [1, 2], kwargs: {} });
    assert.equal(msg.contentType, 'application/data');
    assert.equal(msg.contentEncoding, 'utf-8');
    assert.equal(sigOf(msg).alg, 'rsa-pss-sha256');
    assert.equal(sigOf(msg).kid, rsa.signerId);
    // 5.2 layout by default: the signer id is the first field of the base64-decoded payload.
    assert.ok(Buffer.from(msg.body.toString('latin1'), 'base64').subarray(0, rsa.signerId.length).equals(Buffer.from(rsa.signerId)));
    assert.equal(await (await client.app.sendTask('tasks.add', [40, 2])).get({ timeoutMs: 5000 }), 42);
    const layout55 = server.app({ ...opts, securityAuthLayout: 'celery-5.5' });
    const m55 = layout55.app.buildMessage({ task: 'tasks.add', id: 'a2', args: [1, 2], kwargs: {} });
    assert.ok(Buffer.from(m55.body.toString('latin1'), 'base64').subarray(0, 8).toString('latin1') !== rsa.signerId.slice(0, 8), '5.5 layout base64-encodes the signer');
    assert.equal(await (await layout55.app.sendTask('tasks.add', [1, 2])).get({ timeoutMs: 5000 }), 3, 'both layouts are accepted on input');
  });

  it('settings in snake_case and CELERY_* upper case, and keys from the environment', async () => {
    const snake = server.app({ task_serializer: 'auth', security_key: rsa.keyPath, security_certificate: rsa.certPath, security_cert_store: rsa.storeDir });
    assert.equal((snake.app.security as ConfiguredMessageSecurity).description.signing, 'auth+rsa-header');
    const upper = server.app({ CELERY_TASK_SERIALIZER: 'auth', CELERY_SECURITY_KEY: rsa.keyPath, CELERY_SECURITY_CERTIFICATE: rsa.certPath, CELERY_SECURITY_CERT_STORE: rsa.storeDir });
    assert.equal((upper.app.security as ConfiguredMessageSecurity).description.signing, 'auth+rsa-header');
    const env = server.app({ taskSerializer: 'auth', env: { CELERIAC_SECURITY_KEY: rsa.keyPem, CELERIAC_SECURITY_CERTIFICATE: rsa.certPem, CELERY_SECURITY_CERT_STORE: rsa.storeDir } });
    assert.equal((env.app.security as ConfiguredMessageSecurity).description.signing, 'auth+rsa-header');
    const ring = server.app({ env: { CELERIAC_SIGNING_KEYS: ed.signingLine } });
    assert.equal((ring.app.security as ConfiguredMessageSecurity).description.signing, 'ed25519');
  });

  it('refuses unusable key settings at construction with a ConfigError that names the setting, never the key', async () => {
    const { chmodSync } = await import('node:fs');
    chmodSync(rsa.keyPath, 0o644);
    try {
      assert.throws(() => createApp({ broker: createMemoryBroker(), env: { NODE_ENV: 'test' }, taskSerializer: 'auth', securityKey: rsa.keyPath, securityCertificate: rsa.certPath }), /readable by every user/);
    } finally {
      chmodSync(rsa.keyPath, 0o600);
    }
    assert.throws(() => createApp({ broker: createMemoryBroker(), env: { NODE_ENV: 'test' }, taskSerializer: 'auth' }), /taskSerializer 'auth' needs securityKey/);
    assert.throws(() => createApp({ broker: createMemoryBroker(), env: { NODE_ENV: 'test' }, securityKey: rsa.keyPath, securityCertificate: other.certPath }), /does not belong to certificate/);
    assert.throws(
      () => createApp({ broker: createMemoryBroker(), env: { NODE_ENV: 'test' }, securityCertStore: rsa.storeDir, securityAcceptBodyOnlyFrom: ['nobody 1'] }),
      (e: unknown) => e instanceof ConfigError && /not in the certificate store/.test(e.message),
    );
    const err = (() => {
      try {
        createApp({ broker: createMemoryBroker(), env: { NODE_ENV: 'test' }, securitySigningKeys: 'k1:hmac-sha256:c2hvcnQ=' });
      } catch (e) {
        return e as Error;
      }
      return undefined;
    })();
    assert.ok(err instanceof ConfigError && /shorter than/.test(err.message) && !err.message.includes('c2hvcnQ='));
  });

  it('retries and countdowns longer than the message TTL: the signature covers max(now, eta) + ttl', async () => {
    const opts = { securitySigningKeys: ed.signingLine, securityMessageTtl: 1 };
    const client = server.app(opts);
    const worker = server.app(opts);
    const seen: number[] = [];
    worker.app.task(
      'tasks.flaky',
      (x: number) => {
        seen.push(currentTask().request.retries);
        if (currentTask().request.retries < 2) currentTask().retry({ countdown: 1.2 });
        return x;
      },
      { params: ['x'] },
    );
    await server.worker(worker.app);
    const m = client.app.buildMessage({ task: 'tasks.flaky', id: 'c1', args: [1], kwargs: {}, eta: Date.now() + 60_000 });
    const s = sigOf(m);
    assert.ok(s.exp - s.iat >= 60_000 + 1000 - 50, 'expiry covers the eta plus the ttl');
    const r = await client.app.sendTask('tasks.flaky', [7], {}, { countdown: 1.5 });
    assert.equal(await r.get({ timeoutMs: 15_000 }), 7);
    assert.deepEqual(seen, [0, 1, 2], 'each retry (re-signed by the worker) was accepted');
    assert.equal(securityCounters().forged_message ?? 0, 0);
    assert.equal(securityCounters().replayed_message ?? 0, 0);
  });

  it('the default signature lifetime covers a crash-restore: twice the visibility timeout, at least an hour', () => {
    const dflt = server.app({ securitySigningKeys: ed.signingLine }).app.buildMessage({ task: 't', id: 'ttl-1', args: [], kwargs: {} });
    assert.equal(sigOf(dflt).exp - sigOf(dflt).iat, 2 * 3_600_000);
    const long = server.app({ securitySigningKeys: ed.signingLine, brokerTransportOptions: { visibilityTimeout: 10_800 } }).app.buildMessage({ task: 't', id: 'ttl-2', args: [], kwargs: {} });
    assert.equal(sigOf(long).exp - sigOf(long).iat, 6 * 3_600_000);
    const short = server.app({ securitySigningKeys: ed.signingLine, brokerTransportOptions: { visibilityTimeout: 60 } }).app.buildMessage({ task: 't', id: 'ttl-3', args: [], kwargs: {} });
    assert.equal(sigOf(short).exp - sigOf(short).iat, 3_600_000);
  });

  it('refuses unsigned, tampered, untrusted-key, expired and over-long messages: dead-lettered, counted, and the worker keeps serving', async () => {
    const events = collectEvents();
    const client = server.app({ securitySigningKeys: ed.signingLine });
    const worker = server.app({ securityVerifyKeys: ed.verifyingLine });
    worker.app.task('tasks.add', (a: number, b: number) => a + b);
    await server.worker(worker.app);
    const base = (id: string) => buildTaskMessage({ task: 'tasks.add', id, args: [1, 2], kwargs: {} }, JSON_SERIALIZER);
    const unsigned = base('unsigned-1');
    const tampered = client.app.buildMessage({ task: 'tasks.add', id: 'tampered-1', args: [1, 2], kwargs: {} });
    tampered.body = Buffer.from(tampered.body.toString('latin1').replace('[1, 2]', '[1, 3]').replace('[1,2]', '[1,3]'), 'latin1');
    const foreign = signMessage(base('foreign-1'), parseSigningKeyRing(stranger.signingLine).current(), { ttlMs: 60_000 });
    const expired = signMessage(base('expired-1'), parseSigningKeyRing(ed.signingLine).current(), { ttlMs: 60_000, now: Date.now() - 3_600_000 });
    const overlong = signMessage(base('overlong-1'), parseSigningKeyRing(ed.signingLine).current(), { ttlMs: 30 * 86_400_000 });
    const relabelled = client.app.buildMessage({ task: 'tasks.add', id: 'relabel-1', args: [1, 2], kwargs: {} });
    relabelled.headers.task = 'tasks.other';
    for (const m of [unsigned, tampered, foreign, expired, overlong, relabelled]) await client.broker.publish('celery', m);
    await until(async () => (await client.broker.deadLetters('celery')).length === 6, 5000, 'six dead letters');
    const dead = await client.broker.deadLetters('celery');
    const reason = (id: string) => dead.find((d) => d.message?.headers.id === id)?.reason ?? '';
    assert.match(reason('unsigned-1'), /missing-signature/);
    assert.match(reason('tampered-1'), /bad-signature/);
    assert.match(reason('foreign-1'), /bad-signature/);
    assert.match(reason('expired-1'), /expired/);
    assert.match(reason('overlong-1'), /replay window/);
    assert.match(reason('relabel-1'), /bad-signature/);
    const kinds = events.kinds();
    events.stop();
    assert.ok(kinds.includes('unsigned_message'));
    assert.ok(kinds.includes('forged_message'));
    assert.ok(kinds.includes('replayed_message'));
    for (const id of ['unsigned-1', 'tampered-1', 'expired-1']) {
      assert.ok(worker.logs.some((l) => l.level === 50 && l.id === id), `error line with the id ${id}`);
      assert.ok(events.events.some((e) => e.fields.messageId === id), `security event with the id ${id}`);
    }
    assert.equal(await (await client.app.sendTask('tasks.add', [2, 2])).get({ timeoutMs: 5000 }), 4, 'still serving');
  });

  it('an unknown key id counts as unknown_signer', async () => {
    const events = collectEvents();
    const client = server.app({ securitySigningKeys: generateSigningKey('ed25519', 'someone-else').signingLine });
    const worker = server.app({ securityVerifyKeys: ed.verifyingLine });
    worker.app.task('tasks.add', (a: number, b: number) => a + b);
    await server.worker(worker.app);
    await client.app.sendTask('tasks.add', [1, 1], {}, { taskId: 'unknown-key-1' });
    await until(async () => (await client.broker.deadLetters('celery')).length === 1);
    assert.match((await client.broker.deadLetters('celery'))[0]!.reason, /unknown-key/);
    assert.ok(events.kinds().includes('unknown_signer'));
    events.stop();
  });

  it('auth: a certificate outside the store is refused (untrusted signer)', async () => {
    const events = collectEvents();
    const client = server.app({ taskSerializer: 'auth', securityKey: other.keyPath, securityCertificate: other.certPath });
    const worker = server.app({ taskSerializer: 'auth', securityKey: rsa.keyPath, securityCertificate: rsa.certPath, securityCertStore: rsa.storeDir });
    worker.app.task('tasks.add', (a: number, b: number) => a + b);
    await server.worker(worker.app);
    await client.app.sendTask('tasks.add', [1, 1], {}, { taskId: 'untrusted-cert-1' });
    await until(async () => (await client.broker.deadLetters('celery')).length === 1);
    assert.match((await client.broker.deadLetters('celery'))[0]!.reason, /unknown-key|unknown-signer/);
    assert.ok(events.kinds().includes('unknown_signer'));
    events.stop();
  });

  it('Python-style body-only auth signatures: refused by default, accepted from named signers (warned at start)', async () => {
    const store = { taskSerializer: 'auth' as const, securityKey: rsa.keyPath, securityCertificate: rsa.certPath, securityCertStore: rsa.storeDir };
    const strict = server.app(store);
    strict.app.task('tasks.add', (a: number, b: number) => a + b);
    const w1 = await server.worker(strict.app);
    const bodyOnly = (id: string) => {
      const m = buildTaskMessage({ task: 'tasks.add', id, args: [3, 4], kwargs: {} }, JSON_SERIALIZER);
      return { ...m, contentType: 'application/data', contentEncoding: 'utf-8', body: signCeleryAuth(m.body, 'application/json', 'utf-8', { key: rsa.certified.key.privateKey, cert: rsa.certified.certificate.x509, layout: 'celery-5.2' }) };
    };
    await strict.broker.publish('celery', bodyOnly('body-only-1'));
    await until(async () => (await strict.broker.deadLetters('celery')).length === 1);
    assert.match((await strict.broker.deadLetters('celery'))[0]!.reason, /missing-signature/);
    await w1.stop();
    const lenient = server.app({ ...store, securityAcceptBodyOnlyFrom: [rsa.signerId] });
    lenient.app.task('tasks.add', (a: number, b: number) => a + b);
    await server.worker(lenient.app);
    assert.ok(lenient.logs.some((l) => l.securityEvent === 'policy_warning' && /body-only signatures from/.test(String(l.reason))), 'the weaker mode is warned about at start');
    await lenient.broker.publish('celery', bodyOnly('body-only-2'));
    assert.equal(await lenient.app.asyncResult('body-only-2').get({ timeoutMs: 5000 }), 7);
  });

  it('production: refuses to start without signing unless unsafeAcceptUnsigned; unsigned messages are refused', async () => {
    const { logger } = captureLogger();
    const bare = createApp({ broker: createMemoryBroker(), logger, env: { NODE_ENV: 'production' } });
    await assert.rejects(bare.broker(), (e: unknown) => e instanceof ConfigError && /message signing is not configured/.test(e.message) && /unsafeAcceptUnsigned/.test(e.message));
    await bare.close();
    const optedOut = server.app({ env: { NODE_ENV: 'production' }, unsafeAcceptUnsigned: true });
    await optedOut.app.broker();
    assert.ok(optedOut.logs.some((l) => /unsafeAcceptUnsigned is set/.test(String(l.reason))));
    const signed = server.app({ env: { NODE_ENV: 'production', CELERIAC_VERIFY_KEYS: ed.verifyingLine } });
    signed.app.task('tasks.add', (a: number, b: number) => a + b);
    await server.worker(signed.app);
    await signed.broker.publish('celery', buildTaskMessage({ task: 'tasks.add', id: 'prod-unsigned', args: [1, 1], kwargs: {} }, JSON_SERIALIZER));
    await until(async () => (await signed.broker.deadLetters('celery')).length === 1);
    assert.match((await signed.broker.deadLetters('celery'))[0]!.reason, /missing-signature/);
  });

  it('development without any keys keeps accepting plain messages (and says nothing about signing)', async () => {
    const plain = server.app();
    plain.app.task('tasks.add', (a: number, b: number) => a + b);
    await server.worker(plain.app);
    assert.equal(await (await plain.app.sendTask('tasks.add', [1, 1])).get({ timeoutMs: 5000 }), 2);
    assert.equal((plain.app.security as ConfiguredMessageSecurity).description.verifying, false);
    assert.ok(!plain.logs.some((l) => l.securityEvent === 'policy_warning'));
  });

  it('a signed message copied and replayed is refused; its first delivery ran once', async () => {
    const events = collectEvents();
    const client = server.app({ securitySigningKeys: ed.signingLine });
    const worker = server.app({ securityVerifyKeys: ed.verifyingLine });
    let runs = 0;
    worker.app.task('tasks.count', () => ++runs);
    await server.worker(worker.app);
    const m = client.app.buildMessage({ task: 'tasks.count', id: 'replay-1', args: [], kwargs: {} });
    await client.broker.publish('celery', m);
    await worker.app.asyncResult('replay-1').get({ timeoutMs: 5000 });
    await client.broker.publish('celery', cloneWire(m));
    await until(async () => (await client.broker.deadLetters('celery')).length === 1);
    assert.match((await client.broker.deadLetters('celery'))[0]!.reason, /already processed/);
    assert.equal(runs, 1);
    assert.ok(events.kinds().includes('replayed_message'));
    events.stop();
  });
});
