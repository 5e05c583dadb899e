/**
 * Attacks on a production `celeriac worker` process (the CLI, prefork pool)
 * over a private Redis: each is rejected, logged with the message id and
 * reason, counted as a security event, dead-lettered to `celery.dlq`, and
 * the worker keeps serving.
 *
 * The worker verifies Celeriac header signatures with an Ed25519 verify
 * ring and a Celery certificate store, accepts json, msgpack and auth, and
 * runs in production mode (NODE_ENV=production).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { createApp, type App } from '../../../src/client/app.ts';
import { JSON_SERIALIZER, MSGPACK_SERIALIZER } from '../../../src/codec/serializers.ts';
import { generateSigningKey, parseSigningKeyRing, rsaMessageSigningKey, signMessage } from '../../../src/codec/signing/index.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { newId } from '../../../src/protocol/ids.ts';
import { buildTaskMessage, encodeTaskBody } from '../../../src/protocol/task-message.ts';
import type { WireMessage } from '../../../src/protocol/types.ts';
import { startCeleriacWorker, type CeleriacWorkerProcess } from '../../helpers/celeriac-worker.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { requireService, waitFor } from '../../helpers/services.ts';
import { makeRsaSigner, type RsaSigner } from './helpers.ts';

export const SECURE_TASKS = new URL('./apps/secure_tasks.ts', import.meta.url).pathname;

const ring = generateSigningKey('ed25519', 'attack-test-k1');
const signingKey = parseSigningKeyRing(ring.signingLine).current();
const logger = createLogger({ level: 'silent' });

describe('attacks on a production worker (CLI, private Redis)', () => {
  const ok = hasRedisServer();
  const password = randomBytes(24).toString('base64url');
  let redis: RedisServer | undefined;
  let worker: CeleriacWorkerProcess | undefined;
  let client: App | undefined;
  let attacker: App | undefined;
  let trusted: RsaSigner | undefined;
  let untrusted: RsaSigner | undefined;

  before(async () => {
    if (!ok) return;
    trusted = await makeRsaSigner('trusted-signer');
    untrusted = await makeRsaSigner('untrusted-signer');
    redis = await startRedisServer({ password });
    worker = await startCeleriacWorker({
      module: SECURE_TASKS,
      args: ['-c', '2', '--processes', '1'],
      env: {
        NODE_ENV: 'production',
        // CI runs as root: accepted here (CEL-020 has its own test, run-as-root.test.ts).
        CELERIAC_UNSAFE_ALLOW_ROOT: '1',
        // A loopback test Redis without TLS: the one accepted risk, and it is logged.
        CELERIAC_UNSAFE_ALLOW_PLAINTEXT: '1',
        CELERIAC_BROKER_URL: redis.url(0),
        CELERIAC_RESULT_BACKEND: redis.url(1),
        CELERIAC_VERIFY_KEYS: ring.verifyingLine,
        CELERY_SECURITY_CERT_STORE: trusted.storeDir,
        SEC_ACCEPT: 'json,msgpack,auth',
      },
    });
    client = createApp({ brokerUrl: redis.url(0), resultBackend: redis.url(1), logger, env: { NODE_ENV: 'test' }, securitySigningKeys: ring.signingLine });
    attacker = createApp({ brokerUrl: redis.url(0), logger, env: { NODE_ENV: 'test' } });
  });
  after(async () => {
    await client?.close();
    await attacker?.close();
    await worker?.stop();
    await redis?.stop();
    trusted?.cleanup();
    untrusted?.cleanup();
  });

  /** Publish a hand-made message, as anyone with write access to the broker can. */
  async function inject(message: WireMessage): Promise<void> {
    await (await attacker!.broker()).publish('celery', message);
  }

  const plain = (id: string, args: unknown[] = [1, 2], kwargs: Record<string, unknown> = {}): WireMessage =>
    buildTaskMessage({ task: 'tasks.add', id, args, kwargs }, JSON_SERIALIZER);
  const withBody = (id: string, body: Buffer, contentType = 'application/json', contentEncoding = 'utf-8'): WireMessage => ({ ...plain(id), body, contentType, contentEncoding });
  const signed = (m: WireMessage, now?: number): WireMessage => signMessage(m, signingKey, { ttlMs: 3_600_000, ...(now !== undefined ? { now } : {}) });

  it('rejects, logs, counts and dead-letters every attack, and keeps serving', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    const ids = {
      unsigned: newId(),
      untrusted: newId(),
      tampered: newId(),
      replay: newId(),
      expired: newId(),
      huge: newId(),
      deep: newId(),
      proto: newId(),
      protoKw: newId(),
      contentType: newId(),
      msgpack: newId(),
    };

    // 1. Unsigned: a production worker refuses it.
    await inject(plain(ids.unsigned));
    // 2. Valid JSON whose header is signed by a certificate the worker does not trust.
    await inject(signMessage(plain(ids.untrusted), rsaMessageSigningKey(untrusted!.certified.key.privateKey, untrusted!.certified.certificate.x509), { ttlMs: 60_000 }));
    // 3. A validly signed message with one byte of the body changed.
    const good = client!.buildMessage({ task: 'tasks.add', id: ids.tampered, args: [5, 6], kwargs: {} });
    const i = good.body.indexOf('5');
    good.body[i] = '7'.charCodeAt(0);
    await inject(good);
    // 4. A valid signed message, run once, then replayed byte for byte.
    const original = client!.buildMessage({ task: 'tasks.add', id: ids.replay, args: [20, 22], kwargs: {} });
    await inject(original);
    assert.equal(await client!.asyncResult(ids.replay).get({ timeoutMs: 15_000 }), 42);
    await inject({ ...original, headers: structuredClone(original.headers), body: Buffer.from(original.body) });
    // 5. Signed two hours ago with a one-hour lifetime.
    await inject(signed(plain(ids.expired), Date.now() - 2 * 3_600_000));
    // 6. 50 MiB.
    await inject(withBody(ids.huge, Buffer.from(`[["${'x'.repeat(50 * 1024 * 1024)}"], {}, {}]`)));
    // 7. JSON nested 100,000 deep — validly signed, so only the decoder stands in the way.
    await inject(signed(withBody(ids.deep, Buffer.from(`${'['.repeat(100_000)}${']'.repeat(100_000)}`))));
    // 8. __proto__ in args and in kwargs, validly signed.
    await inject(signed(withBody(ids.proto, Buffer.from('[[{"__proto__": {"polluted": "yes", "isAdmin": true}}], {}, {}]'))));
    await inject(signed(withBody(ids.protoKw, Buffer.from('[[], {"__proto__": {"polluted": "yes"}}, {}]'))));
    // 9. A content type that is not accepted (pickle).
    await inject(withBody(ids.contentType, Buffer.from('gASVBQAAAAAAAABLAS4=', 'base64'), 'application/x-python-serialize', 'binary'));
    // 10. A truncated msgpack body, validly signed.
    const mp = encodeTaskBody(MSGPACK_SERIALIZER, [1, 2], {});
    await inject(signed(withBody(ids.msgpack, mp.subarray(0, mp.length - 5), 'application/x-msgpack', 'binary')));

    const r = redis!.client(0);
    const refused = Object.entries(ids).filter(([k]) => k !== 'replay').length + 1; // + the replayed copy
    await waitFor(async () => (await r.llen('celery.dlq')) >= refused, 60_000, `${refused} dead letters`);
    const dead = (await r.lrange('celery.dlq', 0, -1)).map((d) => JSON.parse(d) as { reason: string; payload: string; id?: string });
    // A large dead letter is kept truncated, with its id beside the payload.
    const reasonFor = (id: string): string => dead.find((d) => d.id === id || d.payload.includes(id))?.reason ?? '(not dead-lettered)';
    assert.match(reasonFor(ids.unsigned), /missing-signature/);
    assert.match(reasonFor(ids.untrusted), /unknown-key/);
    assert.match(reasonFor(ids.tampered), /bad-signature/);
    assert.match(reasonFor(ids.replay), /replayed message/);
    assert.match(reasonFor(ids.expired), /expired/);
    assert.ok(dead.some((d) => /exceeds the .*limit/.test(d.reason)), '50 MiB dead-lettered as too large');
    assert.match(reasonFor(ids.deep), /nesting deeper/);
    assert.match(reasonFor(ids.proto), /__proto__|prototype/);
    assert.match(reasonFor(ids.protoKw), /__proto__|prototype/);
    assert.match(reasonFor(ids.contentType), /not accepted/);
    assert.match(reasonFor(ids.msgpack), /msgpack|truncated|unexpected end|insufficient/i);

    // Logged with id and reason, and counted as security events (the worker's own log lines).
    const logs = worker!.logs();
    const expectKind: Record<string, string> = {
      unsigned: 'unsigned_message',
      untrusted: 'unknown_signer',
      tampered: 'forged_message',
      replay: 'replayed_message',
      expired: 'replayed_message',
      deep: 'malformed_message',
      proto: 'malformed_message',
      protoKw: 'malformed_message',
      contentType: 'content_disallowed',
      msgpack: 'malformed_message',
    };
    for (const [name, kind] of Object.entries(expectKind)) {
      const id = ids[name as keyof typeof ids];
      assert.ok(logs.some((l) => l.securityEvent === kind && l.messageId === id), `security event ${kind} for ${name} (${id})`);
      assert.ok(logs.some((l) => l.level === 50 && l.id === id && typeof l.reason === 'string'), `error line with id and reason for ${name}`);
    }
    // The 50 MiB envelope is refused by the broker adapter before any header is read.
    assert.ok(logs.some((l) => l.securityEvent === 'malformed_message' && /exceeds/.test(String(l.reason))), 'security event for the 50 MiB message');

    // Object.prototype is untouched, in the worker process and here.
    const check = (await (await client!.sendTask('tasks.proto_check', [])).get({ timeoutMs: 15_000 })) as { polluted: unknown; isAdmin: unknown; ownNames: string[] };
    assert.equal(check.polluted, null);
    assert.equal(check.isAdmin, null);
    assert.deepEqual(check.ownNames, Object.getOwnPropertyNames(Object.prototype).sort());
    assert.equal(({} as Record<string, unknown>).polluted, undefined);

    // Still serving, and nothing left half-done.
    assert.equal(await (await client!.sendTask('tasks.add', [2, 2])).get({ timeoutMs: 15_000 }), 4);
    assert.equal(await r.hlen('unacked'), 0);
  });
});
