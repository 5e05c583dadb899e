/**
 * Redis with `--requirepass` and a TLS port, certificates generated at test
 * time (issue 4, "What it must show", Redis part):
 *
 * - the right CA: a task round trip over `rediss://`, from URL parameters
 *   and from Celery's `broker_use_ssl` / `redis_backend_use_ssl` objects;
 * - refused with a wrong CA, an expired server certificate, a host-name
 *   mismatch — each a typed `ConnectionError` naming host and reason, with
 *   a `tls_failure` security event;
 * - plaintext on the TLS port (and TLS on the plaintext port) fails in
 *   bounded time with a typed error;
 * - a wrong password: a clear error without the password, `auth_failure`;
 * - mutual TLS with a client certificate (and refused without one, or with
 *   one from another CA);
 * - `ssl_cert_reqs=CERT_NONE` refused unless `unsafeAllowInsecureTls`,
 *   which then warns at every start.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createApp, type App, type AppOptions } from '../../../src/client/app.ts';
import { InsecureConfigError } from '../../../src/config/policy.ts';
import { ConfigError, ConnectionError } from '../../../src/errors.ts';
import { createWorker } from '../../../src/worker/worker.ts';
import type { TestPki } from '../../helpers/pki.ts';
import { hasRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { requireService } from '../../helpers/services.ts';
import { awkwardPassword, clientList, countEvents, memoryLogger, startTlsRedis, tempDir, testPki, tlsUrl } from './support.ts';

const ok = hasRedisServer();
/** A failed connection must be reported well within this (no hang, no retry loop). */
const FAIL_FAST_MS = 5000;

function q(params: Record<string, string>): string {
  return Object.entries(params).map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join('&');
}

/** Register the test tasks on an app (worker and client share the names). */
function tasks(app: App) {
  return {
    add: app.task('sec.add', (x: number, y: number) => x + y),
    boom: app.task('sec.boom', () => {
      throw new Error('expected failure');
    }),
  };
}

/**
 * A worker app (solo pool, in this process) and a separate client app with
 * the same settings; one successful and one failing task travel the whole
 * way (publish, consume, store, read). Returns the worker app's log lines.
 */
async function roundTrip(options: AppOptions, whileConnected?: () => Promise<void>): Promise<string[]> {
  const wlog = memoryLogger('info');
  const workerApp = createApp({ ...options, logger: wlog.logger });
  tasks(workerApp);
  const clientApp = createApp({ ...options, logger: memoryLogger('warn').logger });
  const client = tasks(clientApp);
  const worker = createWorker({ app: workerApp, pool: 'solo', concurrency: 2, shutdownTimeoutMs: 2000 });
  try {
    await worker.start();
    assert.equal(await (await client.add.delay(20, 22)).get({ timeoutMs: 10_000 }), 42);
    await assert.rejects((await client.boom.delay()).get({ timeoutMs: 10_000 }), /expected failure/);
    await whileConnected?.();
  } finally {
    await worker.stop();
    await workerApp.close();
    await clientApp.close();
  }
  return wlog.lines;
}

/** Connect an app's broker; returns the typed error, the time taken and the security events of `kind`. */
async function failingConnect(options: AppOptions, kind: 'tls_failure' | 'auth_failure') {
  const log = memoryLogger('info');
  const app = createApp({ ...options, logger: log.logger });
  const t0 = performance.now();
  const r = await countEvents(kind, () => app.broker());
  const ms = performance.now() - t0;
  await app.close();
  assert.ok(r.error, 'the connection must fail');
  return { error: r.error as Error & { code?: string }, ms, events: r.count, lines: log.lines };
}

describe('Redis over TLS with requirepass', () => {
  const password = awkwardPassword();
  const tmp = tempDir('tls');
  let pki: TestPki;
  let main: RedisServer | undefined;
  let expired: RedisServer | undefined;
  let wrongHost: RedisServer | undefined;
  let mutual: RedisServer | undefined;

  before(async () => {
    if (!ok) return;
    pki = await testPki(tmp.dir);
    [main, expired, wrongHost, mutual] = await Promise.all([
      startTlsRedis(pki, { password }),
      startTlsRedis(pki, { password, cert: pki.expiredServer, key: pki.expiredServerKey }),
      startTlsRedis(pki, { password, cert: pki.wrongHostServer, key: pki.wrongHostServerKey }),
      startTlsRedis(pki, { password, authClients: 'yes' }),
    ]);
  });
  after(async () => {
    await Promise.all([main?.stop(), expired?.stop(), wrongHost?.stop(), mutual?.stop()]);
    tmp.cleanup();
  });

  it('right CA from URL parameters: a task round trip over rediss://, on the TLS port', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    const url = tlsUrl(main!, { password }, 0, q({ ssl_cert_reqs: 'required', ssl_ca_certs: pki.ca }));
    const backend = tlsUrl(main!, { password }, 1, q({ ssl_cert_reqs: 'CERT_REQUIRED', ssl_ca_certs: pki.ca }));
    const admin = main!.client();
    await roundTrip({ brokerUrl: url, resultBackend: backend }, async () => {
      const ours = (await clientList(admin)).filter((c) => c.name?.startsWith('celeriac:'));
      const names = new Set(ours.map((c) => c.name));
      for (const role of ['celeriac:broker', 'celeriac:notifier', 'celeriac:backend', 'celeriac:backend-sub']) assert.ok(names.has(role), `${role} connected`);
      assert.ok(ours.every((c) => c.laddr === `127.0.0.1:${main!.tlsPort}`), 'every Celeriac connection is on the TLS port');
    });
  });

  it("Celery's broker_use_ssl / redis_backend_use_ssl objects (snake_case keys) work too", async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    await roundTrip({
      brokerUrl: tlsUrl(main!, { password }, 0),
      resultBackend: tlsUrl(main!, { password }, 1),
      broker_use_ssl: { ssl_cert_reqs: 'CERT_REQUIRED', ssl_ca_certs: pki.ca },
      redis_backend_use_ssl: { ssl_cert_reqs: 'CERT_REQUIRED', ssl_ca_certs: pki.ca },
    });
    // camelCase spelling and PEM contents instead of a path.
    await roundTrip({
      brokerUrl: tlsUrl(main!, { password }, 0),
      resultBackend: tlsUrl(main!, { password }, 1),
      brokerUseSsl: { ca: pki.pem['ca.pem']! },
      redisBackendUseSsl: { ca: pki.pem['ca.pem']! },
    });
  });

  it('wrong CA: typed TLS error naming host and reason, tls_failure counted', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    const r = await failingConnect({ brokerUrl: tlsUrl(main!, { password }, 0, q({ ssl_ca_certs: pki.otherCa })) }, 'tls_failure');
    assert.ok(r.error instanceof ConnectionError, `typed error, got ${r.error.name}: ${r.error.message}`);
    assert.equal(r.error.code, 'ERR_TLS');
    assert.match(r.error.message, new RegExp(`127\\.0\\.0\\.1:${main!.tlsPort}`));
    assert.match(r.error.message, /not signed by a trusted CA|untrusted|not trusted/);
    assert.match(r.error.message, /ssl_ca_certs/, 'says what to do');
    assert.equal(r.events, 1);
    assert.ok(r.ms < FAIL_FAST_MS, `failed in ${r.ms} ms`);
    const event = r.lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.securityEvent === 'tls_failure');
    assert.equal(event?.host, `127.0.0.1:${main!.tlsPort}`);
    assert.ok(typeof event?.reason === 'string' && event.reason.length > 0);
  });

  it('expired server certificate: refused, typed error, tls_failure counted', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    const r = await failingConnect({ brokerUrl: tlsUrl(expired!, { password }, 0, q({ ssl_cert_reqs: 'required', ssl_ca_certs: pki.ca })) }, 'tls_failure');
    assert.ok(r.error instanceof ConnectionError, `typed error, got ${r.error.name}: ${r.error.message}`);
    assert.equal(r.error.code, 'ERR_TLS');
    assert.match(r.error.message, new RegExp(`127\\.0\\.0\\.1:${expired!.tlsPort}: the server certificate has expired`));
    assert.equal(r.events, 1);
    assert.ok(r.ms < FAIL_FAST_MS, `failed in ${r.ms} ms`);
  });

  it('host-name mismatch: refused, typed error, tls_failure counted', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    // The certificate names wrong-host.invalid only; we connect to 127.0.0.1 …
    const r = await failingConnect({ brokerUrl: tlsUrl(wrongHost!, { password }, 0, q({ ssl_ca_certs: pki.ca })) }, 'tls_failure');
    assert.ok(r.error instanceof ConnectionError, `typed error, got ${r.error.name}: ${r.error.message}`);
    assert.equal(r.error.code, 'ERR_TLS');
    assert.match(r.error.message, new RegExp(`127\\.0\\.0\\.1:${wrongHost!.tlsPort}: the server certificate does not match the host name`));
    assert.equal(r.events, 1);
    // … and the good certificate (127.0.0.1, ::1, localhost) checked against another expected name fails the same way.
    const r2 = await failingConnect({ brokerUrl: tlsUrl(main!, { password }, 0), brokerUseSsl: { ssl_ca_certs: pki.ca, server_hostname: 'redis.example.com' } }, 'tls_failure');
    assert.equal(r2.error.code, 'ERR_TLS');
    assert.match(r2.error.message, /does not match the host name/);
    assert.equal(r2.events, 1);
  });

  it('a plaintext redis:// client on the TLS port fails cleanly and fast; rediss:// on the plaintext port too', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    // Loopback plaintext is allowed in development (with a warning), so this reaches the network.
    const plain = await failingConnect({ brokerUrl: `redis://:${encodeURIComponent(password)}@127.0.0.1:${main!.tlsPort}/0` }, 'tls_failure');
    assert.ok(plain.error instanceof ConnectionError, `typed error, got ${plain.error.name}: ${plain.error.message}`);
    assert.match(plain.error.code!, /^ERR_(CONNECTION|TLS)/);
    assert.match(plain.error.message, new RegExp(`127\\.0\\.0\\.1:${main!.tlsPort}`));
    assert.match(plain.error.message, /rediss:\/\/|TLS/, 'points at TLS');
    assert.ok(plain.ms < FAIL_FAST_MS, `failed in ${plain.ms} ms`);

    // TLS to a plaintext Redis: the server waits for a command line that never comes, so only
    // the connection deadline (brokerConnectionTimeout) ends it — with a typed error and a hint.
    const tlsOnPlain = await failingConnect({ brokerUrl: `rediss://:${encodeURIComponent(password)}@127.0.0.1:${main!.port}/0?ssl_ca_certs=${encodeURIComponent(pki.ca)}`, brokerConnectionTimeout: 1.5 }, 'tls_failure');
    assert.ok(tlsOnPlain.error instanceof ConnectionError);
    assert.equal(tlsOnPlain.error.code, 'ERR_CONNECTION_TIMEOUT');
    assert.match(tlsOnPlain.error.message, /no answer within 1\.5 s.*TLS handshake got no answer.*plaintext port needs redis:\/\//);
    assert.ok(tlsOnPlain.ms >= 1400 && tlsOnPlain.ms < FAIL_FAST_MS, `failed in ${tlsOnPlain.ms} ms`);
  });

  it('wrong password: a clear typed error without the password, auth_failure counted', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    const wrong = awkwardPassword();
    const r = await failingConnect({ brokerUrl: tlsUrl(main!, { password: wrong }, 0, q({ ssl_ca_certs: pki.ca })) }, 'auth_failure');
    assert.ok(r.error instanceof ConnectionError, `typed error, got ${r.error.name}: ${r.error.message}`);
    assert.equal(r.error.code, 'ERR_AUTH');
    assert.match(r.error.message, new RegExp(`127\\.0\\.0\\.1:${main!.tlsPort}: wrong username or password`));
    assert.equal(r.events, 1);
    assert.ok(r.ms < FAIL_FAST_MS, `failed in ${r.ms} ms`);
    const everything = [r.error.message, r.error.stack ?? '', ...r.lines].join('\n');
    for (const secret of [wrong, encodeURIComponent(wrong), password, encodeURIComponent(password)]) {
      assert.ok(!everything.includes(secret), 'no password in the error or the logs');
    }
    // A missing password on a server that requires one: NOAUTH, also an auth failure.
    const none = await failingConnect({ brokerUrl: `rediss://127.0.0.1:${main!.tlsPort}/0?ssl_ca_certs=${encodeURIComponent(pki.ca)}` }, 'auth_failure');
    assert.equal(none.error.code, 'ERR_AUTH');
    assert.match(none.error.message, /requires authentication/);
  });

  it('mutual TLS: a client certificate from URL parameters or settings; refused without one or with a foreign one', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    const ca = { ssl_cert_reqs: 'required', ssl_ca_certs: pki.ca };
    const withCert = { ...ca, ssl_certfile: pki.client, ssl_keyfile: pki.clientKey };
    await roundTrip({ brokerUrl: tlsUrl(mutual!, { password }, 0, q(withCert)), resultBackend: tlsUrl(mutual!, { password }, 1, q(withCert)) });
    await roundTrip({ brokerUrl: tlsUrl(mutual!, { password }, 0), resultBackend: tlsUrl(mutual!, { password }, 1), broker_use_ssl: withCert, redis_backend_use_ssl: withCert });

    const without = await failingConnect({ brokerUrl: tlsUrl(mutual!, { password }, 0, q(ca)) }, 'tls_failure');
    assert.ok(without.error instanceof ConnectionError, `typed error, got ${without.error.name}: ${without.error.message}`);
    assert.equal(without.error.code, 'ERR_TLS');
    assert.match(without.error.message, new RegExp(`127\\.0\\.0\\.1:${mutual!.tlsPort}`));
    assert.match(without.error.message, /client certificate/);
    assert.ok(without.ms < FAIL_FAST_MS, `failed in ${without.ms} ms`);
    assert.equal(without.events, 1);

    const foreign = await failingConnect({ brokerUrl: tlsUrl(mutual!, { password }, 0, q({ ...ca, ssl_certfile: pki.otherClient, ssl_keyfile: pki.otherClientKey })) }, 'tls_failure');
    assert.equal(foreign.error.code, 'ERR_TLS', foreign.error.message);
    assert.equal(foreign.events, 1);

    // A key file others may read is refused before any connection.
    await assert.rejects(
      createApp({ brokerUrl: tlsUrl(mutual!, { password }, 0, q({ ...ca, ssl_certfile: pki.client, ssl_keyfile: pki.client })), logger: memoryLogger().logger }).broker(),
      (err: Error) => err instanceof ConfigError && /readable by every user/.test(err.message),
    );
  });

  it('ssl_cert_reqs=CERT_NONE is refused unless unsafeAllowInsecureTls, which then warns at every start', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    const url = tlsUrl(main!, { password }, 0, q({ ssl_cert_reqs: 'CERT_NONE' }));
    const production = { env: { NODE_ENV: 'production' }, unsafeAcceptUnsigned: true };

    // Production: the policy refuses at start-up, naming the setting and the fix.
    const log = memoryLogger();
    const refused = createApp({ brokerUrl: url, ...production, logger: log.logger });
    await assert.rejects(refused.broker(), (err: Error) => {
      assert.ok(err instanceof InsecureConfigError, `${err.name}: ${err.message}`);
      assert.match(err.message, /brokerUrl\.ssl_cert_reqs/);
      assert.match(err.message, /CERT_NONE/);
      assert.match(err.message, /fix: .*unsafeAllowInsecureTls/);
      return true;
    });
    await refused.close();
    // Development on the local machine: still refused (by the TLS layer), with the same names.
    const dev = createApp({ brokerUrl: url, logger: memoryLogger().logger, env: { NODE_ENV: 'test' } });
    await assert.rejects(dev.broker(), (err: Error) => err instanceof ConfigError && /ssl_cert_reqs.*CERT_NONE/.test(err.message) && /unsafeAllowInsecureTls/.test(err.message));
    await dev.close();
    // Also as brokerUseSsl.
    const dev2 = createApp({ brokerUrl: tlsUrl(main!, { password }), brokerUseSsl: { ssl_cert_reqs: 'none' }, ...production, logger: memoryLogger().logger });
    await assert.rejects(dev2.broker(), (err: Error) => err instanceof InsecureConfigError && /brokerUseSsl\.ssl_cert_reqs/.test(err.message));
    await dev2.close();

    // With the override it starts — even against a CA we do not trust, which is the risk accepted — and warns at every start.
    for (let start = 1; start <= 2; start++) {
      const l = memoryLogger();
      const app = createApp({ brokerUrl: tlsUrl(main!, { password }, 0, q({ ssl_cert_reqs: 'CERT_NONE', ssl_ca_certs: pki.otherCa })), ...production, unsafeAllowInsecureTls: true, logger: l.logger });
      await app.broker();
      await app.close();
      const warnings = l.logs().filter((x) => x.securityEvent === 'policy_warning' && x.override === 'unsafeAllowInsecureTls');
      assert.equal(warnings.length, 1, `start ${start}: one warning`);
      assert.equal(warnings[0]!.level, 40);
      assert.match(String(warnings[0]!.reason), /CERT_NONE.*accepted by unsafeAllowInsecureTls/);
    }
  });
});
