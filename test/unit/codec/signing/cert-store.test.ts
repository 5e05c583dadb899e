import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import {
  CertificateError,
  CertStore,
  certStoreFromCertificates,
  certStoreFromPems,
  celerySignerId,
  loadCertStore,
  type CertificateFailure,
} from '../../../../src/codec/signing/index.ts';
import { CeleriacError, ConfigError } from '../../../../src/errors.ts';
import { Pki, VECTOR_SIGNER_ID, vectorCertPem } from './pki.ts';

const pki = new Pki();
after(() => pki.cleanup());

function rejects(fn: () => unknown, reason: CertificateFailure): CertificateError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof CertificateError, `expected CertificateError(${reason}), got ${String(caught)}`);
  assert.ok(caught instanceof ConfigError && caught instanceof CeleriacError);
  assert.equal(caught.reason, reason, caught.message);
  assert.equal(caught.code, 'ERR_CERTIFICATE');
  assert.ok(!/MII[A-Za-z0-9+/]{8}|AAAA/.test(caught.message), 'no PEM material in messages');
  return caught;
}

const expired = pki.makeCert({ subj: '/C=XX/O=Past/CN=expired', startDate: '20000101000000Z', endDate: '20010101000000Z' });
const future = pki.makeCert({ subj: '/C=XX/O=Future/CN=future', startDate: '20990101000000Z', endDate: '21000101000000Z' });
const a = pki.makeCert({ subj: '/C=XX/O=Store/CN=a', serial: 1 });
const b = pki.makeCert({ subj: '/C=XX/O=Store/CN=b', serial: 2 });

describe('cert store', () => {
  it('openssl produced the intended validity windows', () => {
    assert.match(expired.cert.validTo, /2001/);
    assert.match(future.cert.validFrom, /2099/);
  });

  it('loads the vector certificate keyed by its signer id', () => {
    const store = certStoreFromPems(vectorCertPem);
    assert.equal(store.size, 1);
    assert.deepEqual(store.signerIds(), [VECTOR_SIGNER_ID]);
    const e = store.get(VECTOR_SIGNER_ID)!;
    assert.equal(e.modulusBytes, 256);
    assert.equal(e.notAfter, Date.UTC(2120, 0, 1));
    assert.ok(store.has(VECTOR_SIGNER_ID));
    assert.equal(store.get('XX Celery Interop Test celery-test-signer 4661'), undefined);
    assert.equal([...store].length, 1);
  });

  it('loads one file holding several certificates', () => {
    const path = pki.write('bundle/bundle.pem', `# comment\n${a.certPem}\n${b.certPem}\n${vectorCertPem}`);
    const store = loadCertStore(path);
    assert.deepEqual(store.signerIds(), ['XX Store a 1', 'XX Store b 2', VECTOR_SIGNER_ID]);
  });

  it('loads every regular, non-hidden file of a directory', () => {
    pki.write('dir1/10-a.pem', a.certPem);
    pki.write('dir1/20-b.crt', `${b.certPem}${vectorCertPem}`);
    pki.write('dir1/.hidden', 'not a certificate');
    pki.write('dir1/sub/nested.pem', 'not read: subdirectories are skipped');
    symlinkSync(join(pki.dir, 'nowhere'), join(pki.dir, 'dir1', 'dangling.pem'));
    const store = loadCertStore(join(pki.dir, 'dir1'));
    assert.deepEqual(store.signerIds(), ['XX Store a 1', 'XX Store b 2', VECTOR_SIGNER_ID]);
  });

  it('refuses an expired certificate at load time', () => {
    const err = rejects(() => loadCertStore(expired.certPath), 'expired-certificate');
    assert.match(err.message, /expired on 2001-01-01/);
    assert.match(err.message, /XX Past expired/);
    rejects(() => certStoreFromPems(vectorCertPem, { now: Date.UTC(2120, 0, 1, 0, 0, 1) }), 'expired-certificate');
  });

  it('refuses a not-yet-valid certificate at load time', () => {
    rejects(() => loadCertStore(future.certPath), 'certificate-not-yet-valid');
    rejects(() => certStoreFromPems(vectorCertPem, { now: Date.UTC(2019, 11, 31) }), 'certificate-not-yet-valid');
  });

  it('tolerates a notBefore up to the configured skew in the future (default 60 s), never an expiry', () => {
    const nb = Date.UTC(2020, 0, 1);
    assert.equal(certStoreFromPems(vectorCertPem, { now: nb - 30_000 }).size, 1);
    rejects(() => certStoreFromPems(vectorCertPem, { now: nb - 120_000 }), 'certificate-not-yet-valid');
    assert.equal(certStoreFromPems(vectorCertPem, { now: nb - 120_000, notBeforeSkewMs: 300_000 }).size, 1);
    rejects(() => certStoreFromPems(vectorCertPem, { now: nb - 1, notBeforeSkewMs: 0 }), 'certificate-not-yet-valid');
    rejects(() => certStoreFromPems(vectorCertPem, { now: Date.UTC(2120, 0, 1) + 1, notBeforeSkewMs: 10 ** 9 }), 'expired-certificate');
  });

  it('refuses a directory that holds an expired certificate among valid ones', () => {
    pki.write('dir2/a.pem', a.certPem);
    pki.write('dir2/old.pem', expired.certPem);
    rejects(() => loadCertStore(join(pki.dir, 'dir2')), 'expired-certificate');
  });

  it('refuses duplicate signer ids', () => {
    pki.write('dir3/one.pem', vectorCertPem);
    pki.write('dir3/two.pem', vectorCertPem);
    const err = rejects(() => loadCertStore(join(pki.dir, 'dir3')), 'duplicate-signer');
    assert.match(err.message, /one\.pem.*two\.pem/);
    rejects(() => certStoreFromPems([vectorCertPem, vectorCertPem]), 'duplicate-signer');
    // Same issuer and serial, different key: still the same signer id.
    const clash = pki.makeCert({ subj: '/C=XX/O=Store/CN=a', serial: 1, keyPem: pki.rsaKeyPem(2048, true) });
    rejects(() => certStoreFromCertificates([a.cert, clash.cert]), 'duplicate-signer');
  });

  it('refuses a private key in the store', () => {
    rejects(() => certStoreFromPems(`${vectorCertPem}${a.keyPem}`), 'private-key-in-store');
    const p = pki.write('dir4/combined.pem', `${a.certPem}${a.keyPem}`);
    rejects(() => loadCertStore(p), 'private-key-in-store');
  });

  it('refuses files without certificates and broken certificate blocks', () => {
    rejects(() => loadCertStore(pki.write('dir5/readme.txt', 'hello')), 'no-certificate');
    rejects(() => certStoreFromPems('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n'), 'invalid-certificate');
  });

  it('refuses non-RSA and short RSA keys', () => {
    const ec = pki.makeCert({ subj: '/CN=ec', ec: true });
    rejects(() => certStoreFromPems(ec.certPem), 'unsupported-key');
    const weak = pki.makeCert({ subj: '/CN=weak', rsaBits: 1024 });
    rejects(() => certStoreFromPems(weak.certPem), 'weak-key');
  });

  it('accepts larger RSA keys and records the raw signature length', () => {
    const big = pki.makeCert({ subj: '/CN=big', rsaBits: 3072 });
    assert.equal(certStoreFromPems(big.certPem).get(celerySignerId(big.cert))!.modulusBytes, 384);
  });

  it('reports unreadable paths and empty stores', () => {
    rejects(() => loadCertStore(join(pki.dir, 'does-not-exist')), 'unreadable');
    pki.write('empty/.keep', '');
    rejects(() => loadCertStore(join(pki.dir, 'empty')), 'empty-store');
    rejects(() => certStoreFromCertificates([]), 'empty-store');
  });

  it('cannot be constructed without the checking builders', () => {
    assert.throws(() => new CertStore(Symbol('fake'), []), TypeError);
  });

  it('freezes entries', () => {
    const store = certStoreFromCertificates([new X509Certificate(vectorCertPem), a.cert]);
    const e = store.get(VECTOR_SIGNER_ID)!;
    assert.ok(Object.isFrozen(e));
  });
});
