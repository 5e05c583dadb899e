import assert from 'node:assert/strict';
import { constants, generateKeyPairSync, randomBytes, verify as cryptoVerify } from 'node:crypto';
import { after, describe, it } from 'node:test';
import {
  CELERY_AUTH_CONTENT_ENCODING,
  CELERY_AUTH_CONTENT_TYPE,
  celerySignerId,
  certStoreFromPems,
  SignatureError,
  signCeleryAuth,
  SigningError,
  verifyCeleryAuth,
  type CeleryAuthLayout,
  type SignatureFailure,
} from '../../../../src/codec/signing/index.ts';
import { DecodeError } from '../../../../src/errors.ts';
import { Pki, VECTOR_SIGNER_ID, vectorCert, vectorCertPem, vectorKey, vectors } from './pki.ts';

const pki = new Pki();
after(() => pki.cleanup());

const SEP = Buffer.from([0, 1]);
const store = certStoreFromPems(vectorCertPem);
const JSON_BODY = Buffer.from('[[20, 22], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]');

function rejects(fn: () => unknown, reason: SignatureFailure): SignatureError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof SignatureError, `expected SignatureError(${reason}), got ${String(caught)}`);
  assert.ok(caught instanceof DecodeError);
  assert.equal(caught.reason, reason, caught.message);
  assert.equal(caught.code, 'ERR_SIGNATURE');
  return caught;
}

/** base64 text S → payload; payload → S. */
const payloadOf = (s: Buffer): Buffer => Buffer.from(s.toString('latin1'), 'base64');
const bodyOf = (payload: Buffer): Buffer => Buffer.from(payload.toString('base64'), 'latin1');

function splitN(buf: Buffer, max: number): Buffer[] {
  const out: Buffer[] = [];
  let start = 0;
  while (out.length < max) {
    const i = buf.indexOf(SEP, start);
    if (i < 0) break;
    out.push(buf.subarray(start, i));
    start = i + 2;
  }
  out.push(buf.subarray(start));
  return out;
}

describe('Celery auth: golden vectors', () => {
  it('verifies every message Celery accepted, with the layout it used', () => {
    const expected: Record<string, CeleryAuthLayout> = {
      signed_by_celery: 'celery-5.2',
      signed_independently: 'celery-5.2',
      signed_main_format: 'celery-5.5',
    };
    for (const [name, layout] of Object.entries(expected)) {
      const m = vectors.messages[name]!;
      assert.equal(m.envelope['content-type'], CELERY_AUTH_CONTENT_TYPE);
      assert.equal(m.envelope['content-encoding'], CELERY_AUTH_CONTENT_ENCODING);
      const body = Buffer.from(m.envelope.body, 'base64');
      assert.equal(body.toString('latin1'), m.layer1_kombu_body_base64_decoded);
      const r = verifyCeleryAuth(body, store, { now: Date.UTC(2026, 10, 24) });
      assert.equal(r.layout, layout, name);
      assert.equal(r.signerId, VECTOR_SIGNER_ID);
      assert.equal(r.signerId, m.fields!.signer);
      assert.equal(r.contentType, m.fields!.content_type);
      assert.equal(r.contentEncoding, m.fields!.content_encoding);
      assert.equal(r.inner.toString('utf8'), m.fields!.body);
    }
  });

  it('verifies the signed remote-control request and reply', () => {
    for (const w of vectors.pidbox_ping_with_auth.wire) {
      const r = verifyCeleryAuth(Buffer.from(w.envelope.body, 'base64'), store);
      assert.equal(r.layout, 'celery-5.2');
      assert.equal(r.inner.toString('utf8'), w.auth_analysis.body);
    }
  });

  it('rejects the tampered message', () => {
    const m = vectors.messages.tampered!;
    assert.equal(m.signature_verifies_over_body, false);
    rejects(() => verifyCeleryAuth(Buffer.from(m.envelope.body, 'base64'), store), 'bad-signature');
  });

  it('rejects the unsigned JSON message as malformed', () => {
    const m = vectors.messages.unsigned_json!;
    rejects(() => verifyCeleryAuth(Buffer.from(m.envelope.body, 'base64'), store), 'malformed');
  });

  it('every vector with a recorded outcome agrees with it', () => {
    for (const [name, m] of Object.entries(vectors.messages)) {
      if (m.signature_verifies_over_body === undefined) continue;
      const body = Buffer.from(m.envelope.body, 'base64');
      let ok = true;
      try {
        verifyCeleryAuth(body, store);
      } catch (err) {
        assert.ok(err instanceof SignatureError);
        ok = false;
      }
      assert.equal(ok, m.signature_verifies_over_body, name);
    }
  });

  it('produces the exact structure of signed_independently (only the randomized PSS signature differs)', () => {
    const m = vectors.messages.signed_independently!;
    const theirs = payloadOf(Buffer.from(m.envelope.body, 'base64'));
    const ours = payloadOf(signCeleryAuth(Buffer.from(m.fields!.body), 'application/json', 'utf-8', { key: vectorKey, cert: vectorCert, layout: 'celery-5.2' }));
    assert.equal(ours.length, theirs.length);
    const head = Buffer.concat([Buffer.from(VECTOR_SIGNER_ID), SEP]);
    assert.deepEqual(ours.subarray(0, head.length), head);
    assert.deepEqual(theirs.subarray(0, head.length), head);
    const sigEnd = head.length + 256;
    assert.deepEqual(ours.subarray(sigEnd), theirs.subarray(sigEnd));
    assert.deepEqual(ours.subarray(sigEnd), Buffer.concat([SEP, Buffer.from('application/json'), SEP, Buffer.from('utf-8'), SEP, Buffer.from(m.fields!.body)]));
    assert.notDeepEqual(ours.subarray(head.length, sigEnd), theirs.subarray(head.length, sigEnd));
  });

  it('produces the structure of signed_main_format in the celery-5.5 layout', () => {
    const m = vectors.messages.signed_main_format!;
    const theirs = splitN(payloadOf(Buffer.from(m.envelope.body, 'base64')), 4);
    const ours = splitN(payloadOf(signCeleryAuth(Buffer.from(m.fields!.body), 'application/json', 'utf-8', { key: vectorKey, cert: vectorCert, layout: 'celery-5.5' })), 4);
    assert.equal(ours.length, 5);
    assert.deepEqual(ours[0], theirs[0]);
    assert.equal(ours[0]!.toString(), Buffer.from(VECTOR_SIGNER_ID).toString('base64'));
    assert.equal(Buffer.from(ours[1]!.toString(), 'base64').length, 256);
    assert.equal(ours[1]!.length, theirs[1]!.length);
    assert.deepEqual(ours.slice(2), theirs.slice(2));
  });

  it('signs with the maximum PSS salt length, as Celery does (222 bytes for RSA-2048/SHA-256)', () => {
    const s = signCeleryAuth(JSON_BODY, 'application/json', 'utf-8', { key: vectorKey, cert: vectorCert, layout: 'celery-5.5' });
    const sig = Buffer.from(splitN(payloadOf(s), 4)[1]!.toString(), 'base64');
    const ok = (saltLength: number): boolean =>
      cryptoVerify('sha256', JSON_BODY, { key: vectorCert.publicKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength }, sig);
    assert.equal(ok(222), true);
    assert.equal(ok(32), false);
  });
});

describe('Celery auth: sign and verify', () => {
  const layouts: CeleryAuthLayout[] = ['celery-5.2', 'celery-5.5'];

  for (const layout of layouts) {
    it(`round-trips with the vector key (${layout})`, () => {
      const s = signCeleryAuth(JSON_BODY, 'application/json', 'utf-8', { key: vectorKey, cert: vectorCert, layout });
      assert.match(s.toString('latin1'), /^[A-Za-z0-9+/]+=*$/);
      const r = verifyCeleryAuth(s, store);
      assert.deepEqual(r, { signerId: VECTOR_SIGNER_ID, layout, contentType: 'application/json', contentEncoding: 'utf-8', inner: JSON_BODY });
    });

    it(`round-trips with keys generated at test time, 2048 and 3072 bits, sha256 and sha512 (${layout})`, () => {
      for (const bits of [2048, 3072]) {
        const made = pki.makeCert({ subj: `/C=XX/O=Gen/CN=gen-${bits}`, rsaBits: bits });
        const s2 = certStoreFromPems([made.certPem, vectorCertPem]);
        for (const digest of ['sha256', 'SHA512']) {
          const s = signCeleryAuth(JSON_BODY, 'application/json', 'utf-8', { key: made.key, cert: made.cert, layout, digest });
          const r = verifyCeleryAuth(s, s2, { digest });
          assert.equal(r.signerId, celerySignerId(made.cert));
          assert.deepEqual(r.inner, JSON_BODY);
          // The verifier must use the signer's digest.
          rejects(() => verifyCeleryAuth(s, s2, { digest: digest === 'sha256' ? 'sha512' : 'sha256' }), 'bad-signature');
        }
      }
    });

    it(`rejects a certificate that is not in the store (${layout})`, () => {
      const untrusted = pki.makeCert({ subj: '/C=XX/O=Mallory/CN=untrusted', keyPem: pki.rsaKeyPem(2048, true) });
      const s = signCeleryAuth(JSON_BODY, 'application/json', 'utf-8', { key: untrusted.key, cert: untrusted.cert, layout });
      const err = rejects(() => verifyCeleryAuth(s, store), 'unknown-signer');
      assert.match(err.message, /XX Mallory untrusted/);
    });

    it(`rejects an impostor certificate with the trusted signer id but another key (${layout})`, () => {
      const impostor = pki.makeCert({ subj: '/C=XX/O=Celery Interop Test/CN=celery-test-signer', serial: 4660, keyPem: pki.rsaKeyPem(2048, true) });
      assert.equal(celerySignerId(impostor.cert), VECTOR_SIGNER_ID);
      const s = signCeleryAuth(JSON_BODY, 'application/json', 'utf-8', { key: impostor.key, cert: impostor.cert, layout });
      rejects(() => verifyCeleryAuth(s, store), 'bad-signature');
    });

    it(`rejects a one-byte change of the body and of the signature (${layout})`, () => {
      const payload = payloadOf(signCeleryAuth(JSON_BODY, 'application/json', 'utf-8', { key: vectorKey, cert: vectorCert, layout }));
      const body = Buffer.from(payload);
      body[body.length - 5]! ^= 0x01;
      rejects(() => verifyCeleryAuth(bodyOf(body), store), 'bad-signature');
      const sig = Buffer.from(payload);
      const sigAt = layout === 'celery-5.2' ? VECTOR_SIGNER_ID.length + 2 + 100 : payload.indexOf(SEP) + 2 + 100;
      // In 5.5 the signature is base64: swap one base64 character for another.
      sig[sigAt] = layout === 'celery-5.2' ? sig[sigAt]! ^ 0x80 : sig[sigAt] === 0x41 ? 0x42 : 0x41;
      rejects(() => verifyCeleryAuth(bodyOf(sig), store), 'bad-signature');
    });

    it(`enforces allowedSigners (${layout})`, () => {
      const s = signCeleryAuth(JSON_BODY, 'application/json', 'utf-8', { key: vectorKey, cert: vectorCert, layout });
      assert.equal(verifyCeleryAuth(s, store, { allowedSigners: new Set([VECTOR_SIGNER_ID]) }).signerId, VECTOR_SIGNER_ID);
      rejects(() => verifyCeleryAuth(s, store, { allowedSigners: new Set(['someone else 1']) }), 'signer-not-allowed');
    });

    it(`re-checks certificate validity at verification time (${layout})`, () => {
      const s = signCeleryAuth(JSON_BODY, 'application/json', 'utf-8', { key: vectorKey, cert: vectorCert, layout });
      rejects(() => verifyCeleryAuth(s, store, { now: Date.UTC(2120, 0, 1, 0, 0, 1) }), 'expired-certificate');
      rejects(() => verifyCeleryAuth(s, store, { now: Date.UTC(2019, 0, 1) }), 'certificate-not-yet-valid');
    });
  }

  it('parses a 5.2 raw signature that contains the separator bytes (fixed-length signature field)', () => {
    let s: Buffer | undefined;
    for (let i = 0; i < 20_000 && !s; i++) {
      const candidate = signCeleryAuth(JSON_BODY, 'application/json', 'utf-8', { key: vectorKey, cert: vectorCert, layout: 'celery-5.2' });
      const sig = payloadOf(candidate).subarray(VECTOR_SIGNER_ID.length + 2, VECTOR_SIGNER_ID.length + 2 + 256);
      if (sig.includes(SEP) || sig[255] === 0x00 || sig[0] === 0x01) s = candidate;
    }
    assert.ok(s, 'PSS is randomized: a signature with 0x00 0x01 inside shows up within a few hundred tries');
    assert.deepEqual(verifyCeleryAuth(s, store).inner, JSON_BODY);
  });

  it('the 5.5 layout carries binary bodies (with separators) that 5.2 cannot', () => {
    const binary = Buffer.from([0x93, 0x00, 0x01, 0xff, 0x00, 0x01, 0x80]);
    const s = signCeleryAuth(binary, 'application/x-msgpack', 'binary', { key: vectorKey, cert: vectorCert, layout: 'celery-5.5' });
    const r = verifyCeleryAuth(s, store);
    assert.deepEqual(r.inner, binary);
    assert.equal(r.contentType, 'application/x-msgpack');
    assert.throws(() => signCeleryAuth(binary, 'application/x-msgpack', 'binary', { key: vectorKey, cert: vectorCert, layout: 'celery-5.2' }), SigningError);
    const notUtf8 = Buffer.from([0x5b, 0xff, 0x5d]);
    assert.throws(() => signCeleryAuth(notUtf8, 'application/json', 'utf-8', { key: vectorKey, cert: vectorCert, layout: 'celery-5.2' }), /not UTF-8/);
  });

  it('refuses to sign with a key that does not match the certificate, a non-RSA key, or a weak digest', () => {
    const other = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    assert.throws(() => signCeleryAuth(JSON_BODY, 'application/json', 'utf-8', { key: other, cert: vectorCert, layout: 'celery-5.2' }), /does not belong/);
    const ed = generateKeyPairSync('ed25519').privateKey;
    assert.throws(() => signCeleryAuth(JSON_BODY, 'application/json', 'utf-8', { key: ed, cert: vectorCert, layout: 'celery-5.2' }), SigningError);
    assert.throws(() => signCeleryAuth(JSON_BODY, 'application/json', 'utf-8', { key: vectorCert.publicKey, cert: vectorCert, layout: 'celery-5.2' }), SigningError);
    assert.throws(() => signCeleryAuth(JSON_BODY, 'application/json', 'utf-8', { key: vectorKey, cert: vectorCert, layout: 'celery-5.2', digest: 'md5' }), SigningError);
    assert.throws(() => signCeleryAuth(JSON_BODY, 'application/json\x00\x01x', 'utf-8', { key: vectorKey, cert: vectorCert, layout: 'celery-5.5' }), SigningError);
    rejects(() => verifyCeleryAuth(Buffer.from('AAAA'), store, { digest: 'sha1' }), 'unsupported-algorithm');
  });

  it('Celery’s signature does not cover the inner content type (the gap the header signature closes)', () => {
    const fields = splitN(payloadOf(signCeleryAuth(JSON_BODY, 'application/json', 'utf-8', { key: vectorKey, cert: vectorCert, layout: 'celery-5.5' })), 4);
    fields[2] = Buffer.from('application/x-msgpack');
    const relabelled = bodyOf(Buffer.concat(fields.flatMap((f, i) => (i ? [SEP, f] : [f]))));
    assert.equal(verifyCeleryAuth(relabelled, store).contentType, 'application/x-msgpack');
  });

  it('reports malformed payloads precisely', () => {
    const good52 = payloadOf(signCeleryAuth(JSON_BODY, 'application/json', 'utf-8', { key: vectorKey, cert: vectorCert, layout: 'celery-5.2' }));
    const good55 = payloadOf(signCeleryAuth(JSON_BODY, 'application/json', 'utf-8', { key: vectorKey, cert: vectorCert, layout: 'celery-5.5' }));
    rejects(() => verifyCeleryAuth(Buffer.from('not base64!'), store), 'malformed');
    rejects(() => verifyCeleryAuth(Buffer.from(`${good52.toString('base64')}\n`), store), 'malformed');
    rejects(() => verifyCeleryAuth(Buffer.alloc(0), store), 'malformed');
    rejects(() => verifyCeleryAuth(bodyOf(Buffer.from('no separator at all')), store), 'malformed');
    rejects(() => verifyCeleryAuth(bodyOf(Buffer.concat([SEP, Buffer.from('x')])), store), 'malformed');
    // Truncated inside the raw signature, and right after it.
    rejects(() => verifyCeleryAuth(bodyOf(good52.subarray(0, VECTOR_SIGNER_ID.length + 2 + 100)), store), 'malformed');
    rejects(() => verifyCeleryAuth(bodyOf(good52.subarray(0, VECTOR_SIGNER_ID.length + 2 + 256)), store), 'malformed');
    // A body containing the separator cannot come from Celery ≤ 5.4.
    rejects(() => verifyCeleryAuth(bodyOf(Buffer.concat([good52, SEP, Buffer.from('x')])), store), 'malformed');
    // 5.5: missing fields, non-base64 signature, empty content type.
    const f = splitN(good55, 4);
    rejects(() => verifyCeleryAuth(bodyOf(Buffer.concat([f[0]!, SEP, f[1]!, SEP, f[2]!])), store), 'malformed');
    rejects(() => verifyCeleryAuth(bodyOf(Buffer.concat([f[0]!, SEP, Buffer.from('!!!!'), SEP, f[2]!, SEP, f[3]!, SEP, f[4]!])), store), 'malformed');
    rejects(() => verifyCeleryAuth(bodyOf(Buffer.concat([f[0]!, SEP, f[1]!, SEP, SEP, f[3]!, SEP, f[4]!])), store), 'malformed');
    // A short 5.5 signature is a bad signature, not a crash.
    rejects(() => verifyCeleryAuth(bodyOf(Buffer.concat([f[0]!, SEP, Buffer.from('AAAA'), SEP, f[2]!, SEP, f[3]!, SEP, f[4]!])), store), 'bad-signature');
    rejects(() => verifyCeleryAuth(bodyOf(good52), store, { maxBytes: 100 }), 'malformed');
  });

  it('never puts key material into errors', () => {
    const err = rejects(() => verifyCeleryAuth(bodyOf(Buffer.from('X'.repeat(5000) + '\x00\x01')), store), 'unknown-signer');
    assert.ok(err.message.length < 600);
  });
});

describe('Celery auth: large inputs', () => {
  it('handles multi-megabyte bodies with typed results, never a stack overflow', () => {
    const big = Buffer.from(JSON.stringify(['x'.repeat(3 * 1024 * 1024)]));
    for (const layout of ['celery-5.2', 'celery-5.5'] as const) {
      const s = signCeleryAuth(big, 'application/json', 'utf-8', { key: vectorKey, cert: vectorCert, layout });
      assert.ok(s.length > 4 * 1024 * 1024);
      assert.deepEqual(verifyCeleryAuth(s, store).inner, big);
    }
    const junk = Buffer.from(randomBytes(5 * 1024 * 1024).toString('base64'));
    rejects(() => verifyCeleryAuth(junk, store), 'malformed');
    rejects(() => verifyCeleryAuth(Buffer.from(randomBytes(3 * 1024 * 1024).toString('base64')), store), 'unknown-signer');
  });
});
