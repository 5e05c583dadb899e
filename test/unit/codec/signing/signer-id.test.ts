import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { celerySignerId, certificateFields } from '../../../../src/codec/signing/index.ts';
import { Pki, VECTOR_SIGNER_ID, vectorCert, vectors } from './pki.ts';

const pki = new Pki();
after(() => pki.cleanup());

describe('celerySignerId', () => {
  it('gives the golden signer id for the vector certificate', () => {
    assert.equal(celerySignerId(vectorCert), VECTOR_SIGNER_ID);
    assert.equal(celerySignerId(vectorCert), vectors.signer_id);
  });

  it('matches every signer field Celery wrote in the vectors', () => {
    for (const m of Object.values(vectors.messages)) {
      if (m.fields) assert.equal(m.fields.signer, celerySignerId(vectorCert));
    }
    for (const w of vectors.pidbox_ping_with_auth.wire) assert.equal(w.auth_analysis.signer, celerySignerId(vectorCert));
  });

  it('reads serial and validity from the DER', () => {
    const f = certificateFields(vectorCert);
    assert.equal(f.serial, 4660n);
    assert.equal(BigInt(`0x${vectorCert.serialNumber}`), f.serial);
    assert.equal(new Date(f.notBefore).toISOString(), '2020-01-01T00:00:00.000Z');
    assert.equal(new Date(f.notAfter).toISOString(), '2120-01-01T00:00:00.000Z');
    assert.deepEqual(
      f.issuer.map((rdn) => rdn.map((a) => [a.oid, a.value])),
      [[['2.5.4.6', 'XX']], [['2.5.4.10', 'Celery Interop Test']], [['2.5.4.3', 'celery-test-signer']]],
    );
  });

  it('agrees with the values in Node’s issuer rendering for a plain name', () => {
    const { cert } = pki.makeCert({ subj: '/C=DE/ST=Berlin/O=Example GmbH/OU=Queue/CN=signer.example', serial: 77 });
    const fromNode = cert.issuer.split('\n').map((l) => l.slice(l.indexOf('=') + 1));
    assert.equal(celerySignerId(cert), `${fromNode.join(' ')} 77`);
    assert.equal(celerySignerId(cert), 'DE Berlin Example GmbH Queue signer.example 77');
  });

  it('writes large serials in decimal', () => {
    const { cert } = pki.makeCert({ subj: '/CN=big', serial: '0x1234567890abcdef1234' });
    assert.equal(celerySignerId(cert), `big ${BigInt('0x1234567890abcdef1234').toString(10)}`);
    assert.equal(celerySignerId(cert), 'big 85968058272638546416180');
  });

  it('flattens multi-valued RDNs in DER order and uses escaped values verbatim (as Python cryptography does)', () => {
    // Checked against Python cryptography 48: ' '.join(a.value for a in cert.issuer) + ' ' + str(serial)
    const { cert } = pki.makeCert({
      subj: '/O=Org+OU=Unit+CN=multi/C=XX/O=a\\,b \\+c/CN=Zoë',
      multivalueRdn: true,
      serial: '0x1234567890abcdef1234',
    });
    assert.equal(celerySignerId(cert), 'Org Unit multi XX a,b +c Zoë 85968058272638546416180');
    const f = certificateFields(cert);
    assert.equal(f.issuer.length, 4);
    assert.equal(f.issuer[0]!.length, 3);
  });

  it('uses the issuer, not the subject', () => {
    // Self-signed certificates have issuer = subject; the vector certificate
    // proves the format, and this guards against reading the wrong Name.
    const { cert } = pki.makeCert({ subj: '/CN=same', serial: 5 });
    assert.equal(cert.issuer, cert.subject);
    assert.equal(celerySignerId(cert), 'same 5');
  });
});
