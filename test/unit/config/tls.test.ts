import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, createServer, type ConnectionOptions, type Server } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { analyzeTls, tlsOptionsFor } from '../../../src/config/tls.ts';
import { parseConnectionUrl } from '../../../src/config/url.ts';
import { ConfigError } from '../../../src/errors.ts';
import { classifyConnectionError } from '../../../src/observability/security-events.ts';
import { createTestPki, type TestPki } from '../../helpers/pki.ts';

let pki: TestPki;
let dir: string;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'celeriac-tls-test-'));
  pki = await createTestPki(join(dir, 'pki'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

const url = (u: string) => parseConnectionUrl(u);

describe('analyzeTls', () => {
  it('no TLS for plain schemes without settings; {} and false do not switch it on', () => {
    assert.equal(analyzeTls(url('redis://h/0'), undefined).enabled, false);
    assert.equal(analyzeTls(url('redis://h/0'), {}).enabled, false);
    assert.equal(analyzeTls(url('redis://h/0'), false).enabled, false);
    assert.equal(analyzeTls(url('sqlite:///x.db'), true).enabled, false);
  });

  it('rediss: verification on, host name checked, TLS 1.2 minimum', () => {
    const a = analyzeTls(url('rediss://h/0'), undefined);
    assert.equal(a.enabled, true);
    assert.equal(a.verify, true);
    assert.equal(a.checkHostname, true);
    assert.equal(a.minVersion, 'TLSv1.2');
    assert.deepEqual(a.insecure, []);
  });

  it('brokerUseSsl: true or a non-empty object switches TLS on for redis:// and amqp://', () => {
    assert.equal(analyzeTls(url('redis://h/0'), true).enabled, true);
    const a = analyzeTls(url('amqp://u:p@h//'), { ca_certs: '/ca.pem' }, 'brokerUseSsl');
    assert.equal(a.enabled, true);
    assert.equal(a.enabledBy, 'brokerUseSsl');
    assert.deepEqual(a.ca, { path: '/ca.pem' });
  });

  for (const v of ['required', 'CERT_REQUIRED', 'ssl.CERT_REQUIRED', 2, 'optional', 'CERT_OPTIONAL', 1]) {
    it(`ssl_cert_reqs=${String(v)} keeps verification on`, () => {
      const a = analyzeTls(url('rediss://h/0'), { ssl_cert_reqs: v });
      assert.equal(a.verify, true);
      assert.deepEqual(a.insecure, []);
    });
  }

  for (const v of ['none', 'CERT_NONE', 'ssl.CERT_NONE', 0]) {
    it(`ssl_cert_reqs=${String(v)} is insecure and names the setting`, () => {
      const a = analyzeTls(url('rediss://h/0'), { ssl_cert_reqs: v }, 'brokerUseSsl');
      assert.equal(a.verify, false);
      assert.equal(a.insecure[0]?.setting, 'brokerUseSsl.ssl_cert_reqs');
    });
  }

  it('CERT_NONE in the URL names the URL setting', () => {
    const a = analyzeTls(url('rediss://h/0?ssl_cert_reqs=CERT_NONE'), undefined, 'redisBackendUseSsl', 'resultBackend');
    assert.equal(a.verify, false);
    assert.equal(a.insecure[0]?.setting, 'resultBackend.ssl_cert_reqs');
  });

  it('URL parameters override the settings object', () => {
    assert.equal(analyzeTls(url('rediss://h/0?ssl_cert_reqs=required'), { ssl_cert_reqs: 'none' }).verify, true);
  });

  it('rejectUnauthorized: false, ssl_check_hostname: false, old TLS versions are insecure', () => {
    assert.equal(analyzeTls(url('rediss://h/0'), { rejectUnauthorized: false }).verify, false);
    const h = analyzeTls(url('rediss://h/0'), { ssl_check_hostname: false });
    assert.equal(h.verify, true);
    assert.equal(h.checkHostname, false);
    assert.equal(h.insecure.length, 1);
    assert.equal(analyzeTls(url('rediss://h/0'), { minVersion: 'TLSv1.1' }).insecure.length, 1);
    assert.equal(analyzeTls(url('rediss://h/0'), { minVersion: 'TLSv1.3' }).insecure.length, 0);
  });

  it('postgres sslmode', () => {
    assert.deepEqual(analyzeTls(url('postgres://h/db?sslmode=verify-full'), undefined).insecure, []);
    const req = analyzeTls(url('postgres://h/db?sslmode=require'), undefined);
    assert.equal(req.verify, false);
    const ca = analyzeTls(url('postgres://h/db?sslmode=verify-ca'), undefined);
    assert.equal(ca.verify, true);
    assert.equal(ca.checkHostname, false);
    assert.deepEqual(analyzeTls(url('postgres://h/db?sslmode=verify-full&sslrootcert=/ca.pem'), undefined).ca, { path: '/ca.pem' });
  });

  it('refuses unknown keys (typos cannot weaken TLS) and half a client certificate', () => {
    assert.throws(() => analyzeTls(url('rediss://h/0'), { ssl_ca_cert: '/x' }), /unknown TLS setting "ssl_ca_cert"/);
    assert.throws(() => analyzeTls(url('rediss://h/0'), { ssl_certfile: '/c.pem' }), /both a certificate and its key/);
    assert.throws(() => analyzeTls(url('rediss://h/0'), { ssl_cert_reqs: 'maybe' }), ConfigError);
    assert.throws(() => analyzeTls(url('rediss://h/0'), [1, 2]), ConfigError);
  });

  it('camelCase ca/cert/key accept PEM text or paths', () => {
    const a = analyzeTls(url('rediss://h/0'), { ca: '-----BEGIN CERTIFICATE-----\n…', cert: '/c.pem', key: '/k.pem', servername: 'redis.internal' });
    assert.ok('pem' in a.ca!);
    assert.deepEqual(a.cert, { path: '/c.pem' });
    assert.equal(a.mutual, true);
    assert.equal(a.servername, 'redis.internal');
  });
});

describe('tlsOptionsFor', () => {
  it('undefined without TLS', () => {
    assert.equal(tlsOptionsFor(url('redis://h/0'), undefined), undefined);
  });

  it('reads CA, certificate and key files; SNI from the host name', () => {
    const o = tlsOptionsFor(url(`rediss://redis.internal:6379/0?ssl_ca_certs=${pki.ca}`), { ssl_certfile: pki.client, ssl_keyfile: pki.clientKey })!;
    assert.equal(o.minVersion, 'TLSv1.2');
    assert.equal(o.rejectUnauthorized, true);
    assert.equal(o.servername, 'redis.internal');
    assert.equal(String(o.ca), readFileSync(pki.ca, 'utf8'));
    assert.match(String(o.cert), /BEGIN CERTIFICATE/);
    assert.match(String(o.key), /BEGIN PRIVATE KEY/);
    assert.equal(o.checkServerIdentity, undefined);
  });

  it('no SNI for an IP host', () => {
    const o = tlsOptionsFor(url('rediss://10.1.2.3/0'), undefined)!;
    assert.equal(o.servername, undefined);
  });

  it('refuses insecure settings unless unsafeAllowInsecureTls', () => {
    assert.throws(() => tlsOptionsFor(url('rediss://h/0?ssl_cert_reqs=none'), undefined), (e: unknown) => e instanceof ConfigError && e.code === 'ERR_INSECURE_TLS' && /unsafeAllowInsecureTls/.test(e.message));
    const o = tlsOptionsFor(url('rediss://h/0?ssl_cert_reqs=none'), undefined, { unsafeAllowInsecureTls: true })!;
    assert.equal(o.rejectUnauthorized, false);
    const h = tlsOptionsFor(url('rediss://h/0'), { ssl_check_hostname: false }, { unsafeAllowInsecureTls: true })!;
    assert.equal(h.rejectUnauthorized, true);
    assert.equal(typeof h.checkServerIdentity, 'function');
  });

  it('refuses a world-readable client key', () => {
    const k = join(dir, 'loose-key.pem');
    writeFileSync(k, readFileSync(pki.clientKey), { mode: 0o644 });
    chmodSync(k, 0o644);
    assert.throws(() => tlsOptionsFor(url('rediss://h/0'), { ssl_certfile: pki.client, ssl_keyfile: k }), /readable by every user/);
  });

  it('missing CA file is a ConfigError naming the path', () => {
    assert.throws(() => tlsOptionsFor(url('rediss://h/0'), { ssl_ca_certs: join(dir, 'nope.pem') }), /nope\.pem/);
  });
});

// ---------------------------------------------------------------- real handshakes

async function withServer(opts: { cert: string; key: string; requestClientCertFromCa?: string }, fn: (port: number) => Promise<void>): Promise<void> {
  const server: Server = createServer({
    cert: readFileSync(opts.cert), key: readFileSync(opts.key),
    ...(opts.requestClientCertFromCa ? { requestCert: true, rejectUnauthorized: true, ca: readFileSync(opts.requestClientCertFromCa) } : {}),
  }, (s) => s.end('hello'));
  server.on('tlsClientError', () => {});
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    await fn((server.address() as { port: number }).port);
  } finally {
    await new Promise<void>((r) => server.close(() => r()));
  }
}

/** Connect to 127.0.0.1:port; Node checks the certificate against `servername` if set, else against `host`. */
function handshake(port: number, host: string, options: ConnectionOptions): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ ...options, host: options.servername ? '127.0.0.1' : host, port }, () => {
      let data = '';
      s.on('data', (d) => (data += d));
      s.on('end', () => resolve(data));
    });
    s.on('error', reject);
  });
}

describe('tlsOptionsFor: real TLS handshakes', () => {
  it('verifies the server with the configured CA (IP host)', async () => {
    await withServer({ cert: pki.server, key: pki.serverKey }, async (port) => {
      const o = tlsOptionsFor(url(`rediss://127.0.0.1:${port}/0?ssl_ca_certs=${pki.ca}&ssl_cert_reqs=required`), undefined)!;
      assert.equal(await handshake(port, '127.0.0.1', o), 'hello');
    });
  });

  it('verifies the server by name (localhost, SNI)', async () => {
    await withServer({ cert: pki.server, key: pki.serverKey }, async (port) => {
      const o = tlsOptionsFor(url(`rediss://localhost:${port}/0`), { ssl_ca_certs: pki.ca })!;
      assert.equal(o.servername, 'localhost');
      assert.equal(await handshake(port, 'localhost', o), 'hello');
    });
  });

  it('fails against a server from another CA, classified as tls', async () => {
    await withServer({ cert: pki.otherServer, key: pki.otherServerKey }, async (port) => {
      const o = tlsOptionsFor(url(`rediss://127.0.0.1:${port}/0`), { ssl_ca_certs: pki.ca })!;
      const err = await handshake(port, '127.0.0.1', o).then(() => undefined, (e: unknown) => e);
      assert.ok(err);
      assert.equal(classifyConnectionError(err).kind, 'tls');
    });
  });

  it('fails on a host name mismatch', async () => {
    await withServer({ cert: pki.wrongHostServer, key: pki.wrongHostServerKey }, async (port) => {
      const o = tlsOptionsFor(url(`rediss://127.0.0.1:${port}/0`), { ssl_ca_certs: pki.ca })!;
      const err = await handshake(port, '127.0.0.1', o).then(() => undefined, (e: unknown) => e);
      assert.equal((err as { code?: string }).code, 'ERR_TLS_CERT_ALTNAME_INVALID');
      assert.equal(classifyConnectionError(err).kind, 'tls');
    });
  });

  it('an explicit servername is what gets checked', async () => {
    await withServer({ cert: pki.wrongHostServer, key: pki.wrongHostServerKey }, async (port) => {
      const o = tlsOptionsFor(url(`rediss://127.0.0.1:${port}/0`), { ssl_ca_certs: pki.ca, server_hostname: 'wrong-host.invalid' })!;
      assert.equal(await handshake(port, '127.0.0.1', o), 'hello');
    });
  });

  it('mutual TLS with ssl_certfile/ssl_keyfile', async () => {
    await withServer({ cert: pki.server, key: pki.serverKey, requestClientCertFromCa: pki.ca }, async (port) => {
      const o = tlsOptionsFor(url(`rediss://127.0.0.1:${port}/0`), { ssl_ca_certs: pki.ca, ssl_certfile: pki.client, ssl_keyfile: pki.clientKey })!;
      assert.equal(await handshake(port, '127.0.0.1', o), 'hello');
      const noCert = tlsOptionsFor(url(`rediss://127.0.0.1:${port}/0`), { ssl_ca_certs: pki.ca })!;
      // TLS 1.3: the refusal may arrive as an alert after the client's handshake completed.
      const outcome = await handshake(port, '127.0.0.1', noCert).then((d) => d, (e: unknown) => e);
      assert.notEqual(outcome, 'hello', 'a client without a certificate must be refused');
      if (outcome instanceof Error) assert.equal(classifyConnectionError(outcome).kind, 'tls');
    });
  });

  it('CERT_NONE with unsafeAllowInsecureTls connects to an untrusted server', async () => {
    await withServer({ cert: pki.otherServer, key: pki.otherServerKey }, async (port) => {
      const o = tlsOptionsFor(url(`rediss://127.0.0.1:${port}/0?ssl_cert_reqs=CERT_NONE`), undefined, { unsafeAllowInsecureTls: true })!;
      assert.equal(await handshake(port, '127.0.0.1', o), 'hello');
    });
  });
});
