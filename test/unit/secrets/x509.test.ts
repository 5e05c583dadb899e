import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, createServer, type Server } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { celerySignerId } from '../../../src/codec/signing/signer-id.ts';
import {
  createCaCertificate, createCertificate, createLeafCertificate, createSelfSignedCertificate, derInteger, derOid, derTime, derTlv,
  generateKeyPair, type CertifiedKey,
} from '../../../src/secrets/x509.ts';
import { createTestPki, type TestPki } from '../../helpers/pki.ts';

const hasOpenssl = spawnSync('openssl', ['version']).status === 0;
const PY = '/usr/bin/python3';
const hasPyCelery = spawnSync(PY, ['-c', 'import celery.security.certificate'], { stdio: 'ignore' }).status === 0;

let dir: string;
let pki: TestPki;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'celeriac-x509-test-'));
  pki = await createTestPki(join(dir, 'pki'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

function openssl(...args: string[]): { status: number | null; out: string } {
  const r = spawnSync('openssl', args, { encoding: 'utf8' });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

function save(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

describe('DER writer', () => {
  it('INTEGER: minimal two’s complement, positive', () => {
    assert.equal(derInteger(0).toString('hex'), '020100');
    assert.equal(derInteger(127).toString('hex'), '02017f');
    assert.equal(derInteger(128).toString('hex'), '02020080');
    assert.equal(derInteger(4660).toString('hex'), '02021234');
    assert.equal(derInteger(2n ** 64n).toString('hex'), '0209010000000000000000');
  });

  it('OBJECT IDENTIFIER', () => {
    assert.equal(derOid('1.2.840.113549.1.1.11').toString('hex'), '06092a864886f70d01010b');
    assert.equal(derOid('2.5.29.17').toString('hex'), '0603551d11');
  });

  it('short and long length forms', () => {
    assert.equal(derTlv(0x04, Buffer.alloc(127)).subarray(0, 2).toString('hex'), '047f');
    assert.equal(derTlv(0x04, Buffer.alloc(200)).subarray(0, 3).toString('hex'), '0481c8');
    assert.equal(derTlv(0x04, Buffer.alloc(300)).subarray(0, 4).toString('hex'), '0482012c');
  });

  it('UTCTime before 2050, GeneralizedTime from 2050', () => {
    assert.equal(derTime(new Date(Date.UTC(2049, 11, 31, 23, 59, 59))).toString('latin1').slice(2), '491231235959Z');
    assert.equal(derTime(new Date(Date.UTC(2050, 0, 1))).toString('latin1').slice(2), '20500101000000Z');
    assert.equal(derTime(new Date(Date.UTC(2050, 0, 1)))[0], 0x18);
    assert.equal(derTime(new Date(Date.UTC(2000, 0, 1)))[0], 0x17);
  });
});

describe('self-signed certificate for Celery auth signing', () => {
  let signer: CertifiedKey;
  before(async () => {
    signer = await createSelfSignedCertificate({ subject: [['C', 'XX'], ['O', 'Celery Interop Test'], ['CN', 'celery-test-signer']], serialNumber: 4660 });
  });

  it('is RSA-2048, self-issued, serial and names as given', () => {
    const x = signer.certificate.x509;
    assert.equal(x.subject, 'C=XX\nO=Celery Interop Test\nCN=celery-test-signer');
    assert.equal(x.issuer, x.subject);
    assert.equal(x.serialNumber.toUpperCase(), '1234');
    assert.equal(x.publicKey.asymmetricKeyType, 'rsa');
    assert.equal(x.publicKey.asymmetricKeyDetails?.modulusLength, 2048);
    assert.ok(x.checkIssued(x));
    assert.ok(x.verify(x.publicKey));
    assert.ok(x.checkPrivateKey(signer.key.privateKey));
    assert.match(signer.keyPem, /^-----BEGIN PRIVATE KEY-----/);
  });

  it("gives Celery's signer id (issuer values + decimal serial)", () => {
    assert.equal(celerySignerId(signer.certificate.x509), 'XX Celery Interop Test celery-test-signer 4660');
  });

  it('refuses RSA keys below 2048 bits', async () => {
    await assert.rejects(createSelfSignedCertificate({ subject: { CN: 'x' }, rsaBits: 1024 }), /2048/);
  });

  it('can be made already expired (for tests)', async () => {
    const old = await createSelfSignedCertificate({
      subject: { CN: 'expired-signer' }, key: signer.key,
      notBefore: new Date(Date.UTC(2020, 0, 1)), notAfter: new Date(Date.UTC(2021, 0, 1)),
    });
    assert.ok(new Date(old.certificate.x509.validTo).getTime() < Date.now());
    assert.equal(new Date(old.certificate.x509.validFrom).toISOString(), '2020-01-01T00:00:00.000Z');
  });

  it('OpenSSL reads it (sha256WithRSAEncryption) and verifies it as its own anchor', { skip: !hasOpenssl && 'openssl not installed' }, () => {
    const p = save('signer.pem', signer.certPem);
    const text = openssl('x509', '-in', p, '-text', '-noout');
    assert.equal(text.status, 0, text.out);
    assert.match(text.out, /Signature Algorithm: sha256WithRSAEncryption/);
    assert.match(text.out, /Serial Number: 4660 \(0x1234\)/);
    assert.match(text.out, /Version: 3 \(0x2\)/);
    const v = openssl('verify', '-CAfile', p, p);
    assert.equal(v.status, 0, v.out);
  });

  it('Python Celery loads it and computes the same signer id', { skip: !hasPyCelery && 'python3-celery not installed' }, () => {
    const p = save('signer-py.pem', signer.certPem);
    const r = spawnSync(PY, ['-c', 'import sys; from celery.security.certificate import Certificate; c = Certificate(open(sys.argv[1]).read()); print(c.get_id()); print(c.has_expired())', p], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split('\n'), ['XX Celery Interop Test celery-test-signer 4660', 'False']);
  });
});

describe('CA and leaf certificates', () => {
  it('CA: basicConstraints CA:true, keyCertSign', { skip: !hasOpenssl && 'openssl not installed' }, () => {
    const text = openssl('x509', '-in', pki.ca, '-text', '-noout').out;
    assert.match(text, /CA:TRUE/);
    assert.match(text, /Certificate Sign, CRL Sign/);
    assert.match(text, /O = Celeriac THROWAWAY TEST PKI/);
  });

  it('leaf: SAN DNS/IP, extendedKeyUsage, issued by the CA', () => {
    const ca = new X509Certificate(readFileSync(pki.ca));
    const server = new X509Certificate(readFileSync(pki.server));
    assert.equal(ca.ca, true);
    assert.equal(server.ca, false);
    assert.ok(server.checkIssued(ca));
    assert.ok(server.verify(ca.publicKey));
    assert.equal(server.subjectAltName, 'IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, DNS:localhost');
    assert.equal(server.checkHost('localhost'), 'localhost');
    assert.equal(server.checkIP('127.0.0.1'), '127.0.0.1');
    assert.equal(server.checkIP('::1'), '::1');
    assert.deepEqual(server.keyUsage, ['1.3.6.1.5.5.7.3.1']);
    const client = new X509Certificate(readFileSync(pki.client));
    assert.deepEqual(client.keyUsage, ['1.3.6.1.5.5.7.3.2']);
  });

  it('OpenSSL verifies the chain (strict), and rejects expired / foreign certificates', { skip: !hasOpenssl && 'openssl not installed' }, () => {
    const ok = openssl('verify', '-x509_strict', '-CAfile', pki.ca, pki.server, pki.client, pki.wrongHostServer);
    assert.equal(ok.status, 0, ok.out);
    const expired = openssl('verify', '-CAfile', pki.ca, pki.expiredServer);
    assert.notEqual(expired.status, 0);
    assert.match(expired.out, /certificate has expired/);
    const foreign = openssl('verify', '-CAfile', pki.ca, pki.otherServer);
    assert.notEqual(foreign.status, 0);
    const purpose = openssl('verify', '-purpose', 'sslserver', '-CAfile', pki.ca, pki.server);
    assert.equal(purpose.status, 0, purpose.out);
    const text = openssl('x509', '-in', pki.server, '-text', '-noout').out;
    assert.match(text, /DNS:localhost/);
    assert.match(text, /TLS Web Server Authentication/);
    assert.match(text, /Signature Algorithm: ecdsa-with-SHA256/);
  });

  for (const alg of ['rsa', 'ec-p384', 'ed25519'] as const) {
    it(`${alg} CA and leaf verify with OpenSSL`, { skip: !hasOpenssl && 'openssl not installed' }, async () => {
      const ca = await createCaCertificate({ subject: { O: 'Celeriac THROWAWAY TEST PKI', CN: `ca-${alg}` }, keyAlgorithm: alg });
      const leaf = await createLeafCertificate(ca, { subject: { CN: `leaf-${alg}` }, hosts: ['localhost'], keyAlgorithm: alg });
      const r = openssl('verify', '-x509_strict', '-CAfile', save(`ca-${alg}.pem`, ca.certPem), save(`leaf-${alg}.pem`, leaf.certPem));
      assert.equal(r.status, 0, r.out);
    });
  }

  it('validates names and SANs', async () => {
    const k = await generateKeyPair('ec-p256');
    assert.throws(() => createCertificate({ subject: { C: 'Germany' }, subjectKey: k.publicKey, signingKey: k.privateKey }), /two-letter/);
    assert.throws(() => createCertificate({ subject: { XX: 'y' }, subjectKey: k.publicKey, signingKey: k.privateKey }), /unknown name attribute/);
    assert.throws(() => createCertificate({ subject: { CN: 'x' }, subjectKey: k.publicKey, signingKey: k.privateKey, subjectAltNames: ['bad host!'] }), /subjectAltName/);
    assert.throws(() => createCertificate({ subject: { CN: 'x' }, subjectKey: k.publicKey, signingKey: k.privateKey, notBefore: new Date(2), notAfter: new Date(1) }), /notAfter/);
  });
});

describe('createTestPki', () => {
  it('writes keys 0600, certificates 0644 and a throwaway note', () => {
    for (const k of [pki.caKey, pki.serverKey, pki.clientKey, pki.expiredServerKey, pki.wrongHostServerKey, pki.otherCaKey, pki.otherServerKey, pki.otherClientKey]) {
      assert.equal(statSync(k).mode & 0o777, 0o600, k);
    }
    assert.equal(statSync(pki.ca).mode & 0o777, 0o644);
    assert.match(readFileSync(join(pki.dir, 'README-THROWAWAY-TEST-MATERIAL.txt'), 'utf8'), /Throwaway/);
  });
});

// ---------------------------------------------------------------- real TLS

async function tlsServer(cert: string, key: string, clientCa?: string): Promise<{ server: Server; port: number }> {
  const server = createServer({
    cert: readFileSync(cert), key: readFileSync(key), minVersion: 'TLSv1.2',
    ...(clientCa ? { requestCert: true, rejectUnauthorized: true, ca: readFileSync(clientCa) } : {}),
  }, (s) => s.end('pong'));
  server.on('tlsClientError', () => {});
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as { port: number }).port };
}

async function talk(port: number, opts: { ca: string; servername?: string; cert?: string; key?: string }): Promise<string | Error> {
  return new Promise((resolve) => {
    const s = connect({
      host: '127.0.0.1', port, ca: readFileSync(opts.ca), minVersion: 'TLSv1.2',
      ...(opts.servername ? { servername: opts.servername } : {}),
      ...(opts.cert ? { cert: readFileSync(opts.cert), key: readFileSync(opts.key!) } : {}),
    }, () => {
      let data = '';
      s.on('data', (d) => (data += d));
      s.on('end', () => resolve(data));
    });
    s.on('error', (e) => resolve(e));
  });
}

describe('real TLS handshakes with generated certificates', () => {
  const servers: Server[] = [];
  after(() => Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r())))));
  async function serve(cert: string, key: string, clientCa?: string): Promise<number> {
    const { server, port } = await tlsServer(cert, key, clientCa);
    servers.push(server);
    return port;
  }

  it('a client trusting the CA verifies the server (IP and name)', async () => {
    const port = await serve(pki.server, pki.serverKey);
    assert.equal(await talk(port, { ca: pki.ca }), 'pong');
    assert.equal(await talk(port, { ca: pki.ca, servername: 'localhost' }), 'pong');
  });

  it('a client trusting another CA fails', async () => {
    const port = await serve(pki.server, pki.serverKey);
    const r = await talk(port, { ca: pki.otherCa });
    assert.ok(r instanceof Error);
    assert.equal((r as NodeJS.ErrnoException).code, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE');
  });

  it('a SAN mismatch fails', async () => {
    const port = await serve(pki.wrongHostServer, pki.wrongHostServerKey);
    const r = await talk(port, { ca: pki.ca });
    assert.equal((r as NodeJS.ErrnoException).code, 'ERR_TLS_CERT_ALTNAME_INVALID');
  });

  it('an expired leaf fails', async () => {
    const port = await serve(pki.expiredServer, pki.expiredServerKey);
    const r = await talk(port, { ca: pki.ca });
    assert.equal((r as NodeJS.ErrnoException).code, 'CERT_HAS_EXPIRED');
  });

  it('RSA leaves work too', async () => {
    const ca = await createCaCertificate({ subject: { O: 'Celeriac THROWAWAY TEST PKI', CN: 'rsa ca' }, keyAlgorithm: 'rsa' });
    const leaf = await createLeafCertificate(ca, { subject: { CN: 'rsa leaf' }, hosts: ['127.0.0.1'], keyAlgorithm: 'rsa' });
    const port = await serve(save('rsa-leaf.pem', leaf.certPem), save('rsa-leaf-key.pem', leaf.keyPem));
    assert.equal(await talk(port, { ca: save('rsa-ca.pem', ca.certPem) }), 'pong');
  });

  it('mutual TLS: the CA-signed client is accepted, a foreign client is not', async () => {
    const port = await serve(pki.server, pki.serverKey, pki.ca);
    assert.equal(await talk(port, { ca: pki.ca, cert: pki.client, key: pki.clientKey }), 'pong');
    assert.notEqual(await talk(port, { ca: pki.ca, cert: pki.otherClient, key: pki.otherClientKey }), 'pong');
    assert.notEqual(await talk(port, { ca: pki.ca }), 'pong');
  });
});
