import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, describe, it } from 'node:test';
import {
  canonicalSigningInput,
  CELERY_AUTH_CONTENT_ENCODING,
  CELERY_AUTH_CONTENT_TYPE,
  certStoreFromPems,
  certStoreVerifier,
  combineVerifiers,
  generateSigningKey,
  parseSigningKeyRing,
  rsaMessageSigningKey,
  SIGNATURE_HEADER,
  SIGNED_HEADERS,
  SIGNED_HEADERS_V1,
  SIGNED_PROPERTIES,
  SignatureError,
  signCeleryAuth,
  SigningError,
  signMessage,
  verifyCeleryAuth,
  verifyMessage,
  type MessageSignatureClaims,
  type MessageSignatureHeader,
  type SignatureFailure,
} from '../../../../src/codec/signing/index.ts';
import type { WireMessage } from '../../../../src/protocol/types.ts';
import { Pki, sampleTaskMessage, VECTOR_SIGNER_ID, vectorCert, vectorCertPem, vectorKey } from './pki.ts';

const pki = new Pki();
after(() => pki.cleanup());

const NOW = Date.UTC(2026, 5, 1, 12, 0, 0);
const TTL = 3_600_000;

const ed = generateSigningKey('ed25519', 'ed-1');
const hm = generateSigningKey('hmac-sha256', 'hm-1');
const senderRing = parseSigningKeyRing(ed.signingLine);
const workerRing = parseSigningKeyRing(`${ed.verifyingLine}\n${hm.verifyingLine}`);

function rejects(fn: () => unknown, reason: SignatureFailure): SignatureError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof SignatureError, `expected SignatureError(${reason}), got ${String(caught)}`);
  assert.equal(caught.reason, reason, caught.message);
  return caught;
}

/** What a transport does to headers: JSON round trip. */
function transported(m: WireMessage): WireMessage {
  return { ...m, headers: JSON.parse(JSON.stringify(m.headers)), body: Buffer.from(m.body) };
}

function header(m: WireMessage): MessageSignatureHeader {
  return m.headers[SIGNATURE_HEADER] as MessageSignatureHeader;
}

function withHeader(m: WireMessage, patch: Record<string, unknown>): WireMessage {
  return { ...m, headers: { ...m.headers, [SIGNATURE_HEADER]: { ...header(m), ...patch } } };
}

describe('celeriac_signature header', () => {
  it('signs a copy and verifies it after a JSON round trip', () => {
    const msg = sampleTaskMessage();
    const signed = signMessage(msg, senderRing.current(), { ttlMs: TTL, now: NOW });
    assert.equal(msg.headers[SIGNATURE_HEADER], undefined, 'the input is not modified');
    assert.notEqual(signed.headers, msg.headers);
    assert.equal(signed.body, msg.body);
    const h = header(signed);
    assert.deepEqual(Object.keys(h).sort(), ['alg', 'exp', 'iat', 'kid', 'nonce', 'sig', 'v']);
    assert.equal(h.v, 2);
    assert.equal(h.alg, 'ed25519');
    assert.equal(h.kid, 'ed-1');
    assert.equal(h.iat, NOW);
    assert.equal(h.exp, NOW + TTL);
    assert.match(h.nonce, /^[A-Za-z0-9_-]{22}$/);
    assert.equal(Buffer.from(h.sig, 'base64').length, 64);
    const claims = verifyMessage(transported(signed), workerRing, { now: NOW + 1000 });
    assert.deepEqual(claims, { alg: 'ed25519', kid: 'ed-1', iat: NOW, exp: NOW + TTL, nonce: h.nonce });
  });

  it('uses a fresh nonce every time and replaces an earlier signature', () => {
    const msg = sampleTaskMessage();
    const a = signMessage(msg, senderRing.current(), { ttlMs: TTL, now: NOW });
    const b = signMessage(a, senderRing.current(), { ttlMs: TTL, now: NOW });
    assert.notEqual(header(a).nonce, header(b).nonce);
    verifyMessage(b, workerRing, { now: NOW });
  });

  it('fails when any signed header changes, is removed, or turns from null to absent', () => {
    const signed = signMessage(sampleTaskMessage({ eta: '2026-06-01T12:05:00.000000+00:00', group: 'g-1', group_index: 0, compression: 'application/x-gzip' }), senderRing.current(), { ttlMs: TTL, now: NOW });
    verifyMessage(signed, workerRing, { now: NOW });
    const changes: Record<string, unknown> = {
      task: 'tasks.delete_everything',
      id: '00000000-0000-4000-8000-000000000000',
      eta: '2026-06-01T12:05:01.000000+00:00',
      expires: '2026-06-02T00:00:00+00:00',
      retries: 1,
      timelimit: [null, 5],
      group: 'g-2',
      group_index: 1,
      root_id: 'other-root',
      parent_id: 'some-parent',
      shadow: 'shadow-name',
      ignore_result: true,
      compression: 'application/x-bz2',
      argsrepr: '(1, 2)',
      kwargsrepr: "{'spoofed': True}",
      origin: 'gen1@trusted-host',
    };
    assert.deepEqual(Object.keys(changes).sort(), [...SIGNED_HEADERS].sort());
    for (const [name, value] of Object.entries(changes)) {
      const m = { ...signed, headers: { ...signed.headers, [name]: value } };
      rejects(() => verifyMessage(m, workerRing, { now: NOW }), 'bad-signature');
      const removed: Record<string, unknown> = { ...signed.headers };
      delete removed[name];
      rejects(() => verifyMessage({ ...signed, headers: removed }, workerRing, { now: NOW }), 'bad-signature');
    }
    // null and absent are different values.
    const nullShadow = signMessage(sampleTaskMessage({ shadow: null }), senderRing.current(), { ttlMs: TTL, now: NOW });
    const noShadow: Record<string, unknown> = { ...nullShadow.headers };
    delete noShadow.shadow;
    rejects(() => verifyMessage({ ...nullShadow, headers: noShadow }, workerRing, { now: NOW }), 'bad-signature');
  });

  // Issue 20 #15: argsrepr, origin, priority and correlation_id could be changed on a signed message,
  // spoofing what monitoring shows and reordering work.
  it('v2 covers argsrepr, kwargsrepr, origin and the priority and correlation_id properties', () => {
    const base = sampleTaskMessage();
    const msg: WireMessage = { ...base, properties: { ...base.properties, priority: 3, correlation_id: base.headers.id as string } };
    const signed = signMessage(msg, senderRing.current(), { ttlMs: TTL, now: NOW });
    verifyMessage(transported(signed), workerRing, { now: NOW });
    for (const [name, value] of [['argsrepr', "('rm -rf /',)"], ['kwargsrepr', "{'spoofed': 1}"], ['origin', 'gen9@elsewhere']] as const) {
      rejects(() => verifyMessage({ ...signed, headers: { ...signed.headers, [name]: value } }, workerRing, { now: NOW }), 'bad-signature');
    }
    for (const props of [{ priority: 9 }, { priority: 0 }, { correlation_id: 'another-id' }, { correlation_id: undefined }]) {
      rejects(() => verifyMessage({ ...signed, properties: { ...signed.properties, ...props } }, workerRing, { now: NOW }), 'bad-signature');
    }
    // What transports do to properties: priority absent arrives as 0, an empty correlation_id is dropped by AMQP.
    const plain = signMessage({ ...base, properties: { ...base.properties, priority: undefined, correlation_id: '' } }, senderRing.current(), { ttlMs: TTL, now: NOW });
    verifyMessage({ ...plain, properties: { ...plain.properties, priority: 0, correlation_id: undefined } }, workerRing, { now: NOW });
  });

  it('still verifies v1 signatures of earlier senders; a v2 signature cannot be passed off as v1', () => {
    const msg = sampleTaskMessage();
    const claims: MessageSignatureClaims = { alg: 'ed25519', kid: 'ed-1', iat: NOW, exp: NOW + TTL, nonce: 'AAAAAAAAAAAAAAAAAAAAAA' };
    const v1sig = senderRing.current().sign(canonicalSigningInput(msg, claims, 1)).toString('base64');
    const v1: WireMessage = { ...msg, headers: { ...msg.headers, [SIGNATURE_HEADER]: { v: 1, ...claims, sig: v1sig } } };
    assert.deepEqual(verifyMessage(transported(v1), workerRing, { now: NOW }), claims);
    // v1 never covered argsrepr: unchanged behaviour for old senders.
    verifyMessage({ ...v1, headers: { ...v1.headers, argsrepr: 'changed' } }, workerRing, { now: NOW });
    const v2 = signMessage(msg, senderRing.current(), { ttlMs: TTL, now: NOW });
    rejects(() => verifyMessage(withHeader(v2, { v: 1 }), workerRing, { now: NOW }), 'bad-signature');
    rejects(() => verifyMessage(withHeader(v2, { v: 3 }), workerRing, { now: NOW }), 'malformed');
  });

  it('fails for a one-byte body change, content type and content encoding changes', () => {
    const signed = signMessage(sampleTaskMessage(), senderRing.current(), { ttlMs: TTL, now: NOW });
    const body = Buffer.from(signed.body);
    body[3]! ^= 1;
    rejects(() => verifyMessage({ ...signed, body }, workerRing, { now: NOW }), 'bad-signature');
    rejects(() => verifyMessage({ ...signed, contentType: 'application/x-msgpack' }, workerRing, { now: NOW }), 'bad-signature');
    rejects(() => verifyMessage({ ...signed, contentEncoding: 'binary' }, workerRing, { now: NOW }), 'bad-signature');
  });

  it('does not cover what transports add or change (redelivered, delivery info and tag, body encoding)', () => {
    const signed = signMessage(sampleTaskMessage(), senderRing.current(), { ttlMs: TTL, now: NOW });
    const m = {
      ...signed,
      headers: { ...signed.headers, redelivered: true },
      properties: { ...signed.properties, delivery_info: { exchange: '', routing_key: 'other' }, delivery_tag: 'x', body_encoding: 'base64', delivery_mode: 1 },
    };
    verifyMessage(m, workerRing, { now: NOW });
  });

  it('fails when the claims are edited (kid, iat, exp, nonce)', () => {
    const other = generateSigningKey('ed25519', 'ed-2');
    const both = parseSigningKeyRing(`${ed.signingLine}\n${other.signingLine}`);
    const signed = signMessage(sampleTaskMessage(), both.get('ed-1')!, { ttlMs: TTL, now: NOW });
    rejects(() => verifyMessage(withHeader(signed, { kid: 'ed-2' }), both, { now: NOW }), 'bad-signature');
    rejects(() => verifyMessage(withHeader(signed, { exp: NOW + 10 * TTL }), both, { now: NOW }), 'bad-signature');
    rejects(() => verifyMessage(withHeader(signed, { iat: NOW - 1 }), both, { now: NOW }), 'bad-signature');
    rejects(() => verifyMessage(withHeader(signed, { nonce: 'AAAAAAAAAAAAAAAAAAAAAA' }), both, { now: NOW }), 'bad-signature');
    rejects(() => verifyMessage(withHeader(signed, { sig: Buffer.alloc(64).toString('base64') }), both, { now: NOW }), 'bad-signature');
  });

  it('enforces exp and iat with clock skew', () => {
    const signed = signMessage(sampleTaskMessage(), senderRing.current(), { ttlMs: 60_000, now: NOW });
    verifyMessage(signed, workerRing, { now: NOW + 60_000 + 29_999 });
    rejects(() => verifyMessage(signed, workerRing, { now: NOW + 60_000 + 30_000 }), 'expired');
    rejects(() => verifyMessage(signed, workerRing, { now: NOW + 60_000, clockSkewMs: 0 }), 'expired');
    verifyMessage(signed, workerRing, { now: NOW - 30_000 });
    rejects(() => verifyMessage(signed, workerRing, { now: NOW - 30_001 }), 'not-yet-valid');
    rejects(() => verifyMessage(signed, workerRing, { now: NOW - 1, clockSkewMs: 0 }), 'not-yet-valid');
  });

  it('checks the signature before the time window (an expired forgery is a bad signature)', () => {
    const signed = signMessage(sampleTaskMessage(), senderRing.current(), { ttlMs: 1000, now: NOW });
    rejects(() => verifyMessage({ ...signed, headers: { ...signed.headers, task: 'x' } }, workerRing, { now: NOW + 10 * TTL }), 'bad-signature');
  });

  it('reports missing, malformed and unknown-key signatures', () => {
    const signed = signMessage(sampleTaskMessage(), senderRing.current(), { ttlMs: TTL, now: NOW });
    rejects(() => verifyMessage(sampleTaskMessage(), workerRing, { now: NOW }), 'missing-signature');
    rejects(() => verifyMessage({ ...signed, headers: { ...signed.headers, [SIGNATURE_HEADER]: null } }, workerRing), 'missing-signature');
    rejects(() => verifyMessage({ ...signed, headers: { ...signed.headers, [SIGNATURE_HEADER]: JSON.stringify(header(signed)) } }, workerRing), 'malformed');
    rejects(() => verifyMessage({ ...signed, headers: { ...signed.headers, [SIGNATURE_HEADER]: [header(signed)] } }, workerRing), 'malformed');
    rejects(() => verifyMessage(withHeader(signed, { v: 3 }), workerRing, { now: NOW }), 'malformed');
    rejects(() => verifyMessage(withHeader(signed, { extra: 1 }), workerRing, { now: NOW }), 'malformed');
    rejects(() => verifyMessage(withHeader(signed, { nonce: 'short' }), workerRing, { now: NOW }), 'malformed');
    rejects(() => verifyMessage(withHeader(signed, { sig: 'not base64!' }), workerRing, { now: NOW }), 'malformed');
    rejects(() => verifyMessage(withHeader(signed, { iat: '1' }), workerRing, { now: NOW }), 'malformed');
    rejects(() => verifyMessage(withHeader(signed, { exp: NOW - 1 }), workerRing, { now: NOW }), 'malformed');
    rejects(() => verifyMessage(withHeader(signed, { kid: '' }), workerRing, { now: NOW }), 'malformed');
    rejects(() => verifyMessage(withHeader(signed, { alg: 'none' }), workerRing, { now: NOW }), 'unsupported-algorithm');
    rejects(() => verifyMessage(withHeader(signed, { kid: 'nobody' }), workerRing, { now: NOW }), 'unknown-key');
    rejects(() => verifyMessage(withHeader(signed, { alg: 'hmac-sha256' }), workerRing, { now: NOW }), 'unknown-key');
    rejects(() => verifyMessage({ ...signed, headers: { ...signed.headers, eta: () => 1 } }, workerRing, { now: NOW }), 'malformed');
  });

  it('works with HMAC-SHA256 keys', () => {
    const ring = parseSigningKeyRing(hm.signingLine);
    const signed = signMessage(sampleTaskMessage(), ring.current(), { ttlMs: TTL, now: NOW });
    assert.equal(header(signed).alg, 'hmac-sha256');
    assert.equal(Buffer.from(header(signed).sig, 'base64').length, 32);
    verifyMessage(transported(signed), workerRing, { now: NOW });
    rejects(() => verifyMessage({ ...signed, headers: { ...signed.headers, retries: 3 } }, workerRing, { now: NOW }), 'bad-signature');
  });

  it('key rotation: old kid still verifies, the new kid signs, a retired kid is rejected', () => {
    const k1 = generateSigningKey('ed25519', 'k1');
    const k2 = generateSigningKey('ed25519', 'k2');
    const before = parseSigningKeyRing(k1.signingLine);
    const oldMsg = signMessage(sampleTaskMessage(), before.current(), { ttlMs: TTL, now: NOW });
    const during = parseSigningKeyRing(`${k1.signingLine}\n${k2.signingLine}`);
    const newMsg = signMessage(sampleTaskMessage(), during.current(), { ttlMs: TTL, now: NOW });
    assert.equal(header(newMsg).kid, 'k2');
    const workersDuring = parseSigningKeyRing(`${k1.verifyingLine}\n${k2.verifyingLine}`);
    verifyMessage(oldMsg, workersDuring, { now: NOW });
    verifyMessage(newMsg, workersDuring, { now: NOW });
    const workersAfter = workersDuring.without('k1');
    verifyMessage(newMsg, workersAfter, { now: NOW });
    rejects(() => verifyMessage(oldMsg, workersAfter, { now: NOW }), 'unknown-key');
  });

  it('refuses bad options and unsignable header values at signing time', () => {
    const key = senderRing.current();
    assert.throws(() => signMessage(sampleTaskMessage(), key, { ttlMs: 0, now: NOW }), SigningError);
    assert.throws(() => signMessage(sampleTaskMessage(), key, { ttlMs: 1.5, now: NOW }), SigningError);
    assert.throws(() => signMessage(sampleTaskMessage(), key, { ttlMs: TTL, now: -1 }), SigningError);
    assert.throws(() => signMessage(sampleTaskMessage({ retries: Number.NaN }), key, { ttlMs: TTL }), SigningError);
    assert.throws(() => signMessage(sampleTaskMessage({ task: '\uD800' }), key, { ttlMs: TTL }), SigningError);
    assert.throws(() => signMessage(sampleTaskMessage(), workerRing.get('ed-1')!, { ttlMs: TTL }), SigningError);
  });
});

describe('canonical signing input', () => {
  const claims: MessageSignatureClaims = { alg: 'ed25519', kid: 'k', iat: 1, exp: 2, nonce: 'AAAAAAAAAAAAAAAAAAAAAA' };

  it('does not depend on header order and treats undefined as absent', () => {
    const m = sampleTaskMessage();
    const reversed = { ...m, headers: Object.fromEntries(Object.entries(m.headers).reverse()) };
    assert.deepEqual(canonicalSigningInput(m, claims), canonicalSigningInput(reversed, claims));
    const noEta: Record<string, unknown> = { ...m.headers };
    delete noEta.eta;
    assert.deepEqual(canonicalSigningInput({ ...m, headers: { ...m.headers, eta: undefined } }, claims), canonicalSigningInput({ ...m, headers: noEta }, claims));
  });

  it('is unambiguous: shifting text between fields or changing types changes the input', () => {
    const m = sampleTaskMessage();
    const input = (h: Record<string, unknown>): string => canonicalSigningInput({ ...m, headers: { ...m.headers, ...h } }, claims).toString('hex');
    assert.notEqual(input({ task: 'ab', id: 'c' }), input({ task: 'a', id: 'bc' }));
    assert.notEqual(input({ retries: 1 }), input({ retries: '1' }));
    assert.notEqual(input({ eta: null }), input({ eta: 'null' }));
    assert.notEqual(input({ ignore_result: false }), input({ ignore_result: 0 }));
    assert.notEqual(input({ timelimit: [1, null] }), input({ timelimit: [null, 1] }));
    assert.notEqual(input({ timelimit: [[1], 2] }), input({ timelimit: [[1, 2]] }));
    assert.equal(input({ timelimit: { b: 1, a: 2 } }), input({ timelimit: { a: 2, b: 1 } }));
    assert.notEqual(canonicalSigningInput({ ...m, contentType: 'a', contentEncoding: 'bc' }, claims).toString('hex'), canonicalSigningInput({ ...m, contentType: 'ab', contentEncoding: 'c' }, claims).toString('hex'));
    assert.notEqual(canonicalSigningInput(m, claims).toString('hex'), canonicalSigningInput(m, { ...claims, kid: 'k2' }).toString('hex'));
  });

  it('starts with the domain-separation label of its version', () => {
    for (const [version, label] of [[2, 'celeriac/message-signature/v2'], [1, 'celeriac/message-signature/v1']] as const) {
      const input = canonicalSigningInput(sampleTaskMessage(), claims, version);
      assert.equal(input.readUInt32BE(0), label.length);
      assert.equal(input.subarray(4, 4 + label.length).toString(), label);
    }
  });
});

describe('auth mode: Celery body signature plus the RSA header signature', () => {
  const store = certStoreFromPems(vectorCertPem);
  const rsaKey = rsaMessageSigningKey(vectorKey, vectorCert);

  function authMessage(overrides: Record<string, unknown> = {}): WireMessage {
    const base = sampleTaskMessage(overrides);
    const body = signCeleryAuth(base.body, base.contentType, base.contentEncoding, { key: vectorKey, cert: vectorCert, layout: 'celery-5.2' });
    return signMessage({ ...base, contentType: CELERY_AUTH_CONTENT_TYPE, contentEncoding: CELERY_AUTH_CONTENT_ENCODING, body }, rsaKey, { ttlMs: TTL, now: Date.now() });
  }

  it('signs the header with the same RSA key, kid = Celery signer id', () => {
    assert.equal(rsaKey.alg, 'rsa-pss-sha256');
    assert.equal(rsaKey.kid, VECTOR_SIGNER_ID);
    const m = transported(authMessage());
    assert.equal(header(m).kid, VECTOR_SIGNER_ID);
    assert.equal(Buffer.from(header(m).sig, 'base64').length, 256);
    assert.equal(verifyCeleryAuth(m.body, store).inner.toString(), sampleTaskMessage().body.toString());
    assert.equal(verifyMessage(m, certStoreVerifier(store)).kid, VECTOR_SIGNER_ID);
  });

  it('relabelling the task name or eta breaks the header signature while Celery’s body signature still passes', () => {
    const m = authMessage();
    for (const patch of [{ task: 'tasks.shutdown_everything' }, { eta: '2030-01-01T00:00:00+00:00' }, { id: 'replayed-id' }]) {
      const relabelled = { ...m, headers: { ...m.headers, ...patch } };
      assert.equal(verifyCeleryAuth(relabelled.body, store).signerId, VECTOR_SIGNER_ID, 'Celery only signs the body');
      rejects(() => verifyMessage(relabelled, certStoreVerifier(store)), 'bad-signature');
    }
  });

  it('re-checks the certificate at verification time and honours allowedSigners', () => {
    const m = authMessage();
    rejects(() => verifyMessage(m, certStoreVerifier(store), { now: Date.UTC(2120, 0, 2) }), 'expired-certificate');
    rejects(() => verifyMessage(m, certStoreVerifier(store, { allowedSigners: new Set(['other 1']) })), 'signer-not-allowed');
    verifyMessage(m, certStoreVerifier(store, { allowedSigners: new Set([VECTOR_SIGNER_ID]) }));
  });

  it('rejects a header signed by a certificate that is not in the store', () => {
    const untrusted = pki.makeCert({ subj: '/C=XX/O=Mallory/CN=m', keyPem: pki.rsaKeyPem(2048, true) });
    const m = signMessage(sampleTaskMessage(), rsaMessageSigningKey(untrusted.key, untrusted.cert), { ttlMs: TTL });
    rejects(() => verifyMessage(m, certStoreVerifier(store)), 'unknown-key');
  });

  it('an impostor certificate with the same signer id fails as a bad signature', () => {
    const impostor = pki.makeCert({ subj: '/C=XX/O=Celery Interop Test/CN=celery-test-signer', serial: 4660, keyPem: pki.rsaKeyPem(2048, true) });
    const m = signMessage(sampleTaskMessage(), rsaMessageSigningKey(impostor.key, impostor.cert), { ttlMs: TTL });
    rejects(() => verifyMessage(m, certStoreVerifier(store)), 'bad-signature');
  });

  it('combineVerifiers accepts ring-signed and certificate-signed messages', () => {
    const verifier = combineVerifiers(workerRing, certStoreVerifier(store));
    verifyMessage(authMessage(), verifier);
    verifyMessage(signMessage(sampleTaskMessage(), senderRing.current(), { ttlMs: TTL }), verifier);
    rejects(() => verifyMessage(withHeader(authMessage(), { kid: 'unknown 1' }), verifier), 'unknown-key');
  });

  it('refuses RSA keys that do not match, or are not RSA', () => {
    const other = pki.makeCert({ subj: '/CN=o', keyPem: pki.rsaKeyPem(2048, true) });
    assert.throws(() => rsaMessageSigningKey(other.key, vectorCert), SigningError);
  });
});

describe('canonical signing input: documented layout', () => {
  // An independent, deliberately naive encoder written from the module's documentation.
  const lp = (b: Buffer): Buffer => {
    const n = Buffer.alloc(4);
    n.writeUInt32BE(b.length);
    return Buffer.concat([n, b]);
  };
  const lps = (s: string): Buffer => lp(Buffer.from(s, 'utf8'));
  const count = (n: number): Buffer => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n);
    return b;
  };
  function value(v: unknown): Buffer {
    if (v === undefined) return Buffer.from('A');
    if (v === null) return Buffer.from('N');
    if (v === true) return Buffer.from('T');
    if (v === false) return Buffer.from('F');
    if (typeof v === 'number') return Buffer.concat([Buffer.from('n'), lps(String(v))]);
    if (typeof v === 'string') return Buffer.concat([Buffer.from('s'), lps(v)]);
    if (Array.isArray(v)) return Buffer.concat([Buffer.from('l'), count(v.length), ...v.map((x) => value(x === undefined ? null : x))]);
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o).filter((k) => o[k] !== undefined).sort();
    return Buffer.concat([Buffer.from('o'), count(keys.length), ...keys.flatMap((k) => [lps(k), value(o[k])])]);
  }
  function reference(m: WireMessage, c: MessageSignatureClaims, version: 1 | 2): Buffer {
    const p = m.properties as Record<string, unknown>;
    return Buffer.concat([
      lps(`celeriac/message-signature/v${version}`),
      lps(c.alg),
      lps(c.kid),
      lps(String(c.iat)),
      lps(String(c.exp)),
      lps(c.nonce),
      lps(m.contentType),
      lps(m.contentEncoding),
      lp(createHash('sha256').update(m.body).digest()),
      ...(version === 1 ? SIGNED_HEADERS_V1 : SIGNED_HEADERS).flatMap((h) => [lps(h), lp(value(m.headers[h]))]),
      ...(version === 1
        ? []
        : [lps('priority'), lp(value(p.priority ?? 0)), lps('correlation_id'), lp(value(p.correlation_id === '' || p.correlation_id === null ? undefined : p.correlation_id))]),
    ]);
  }
  const claims: MessageSignatureClaims = { alg: 'hmac-sha256', kid: 'k-1', iat: 1_780_000_000_000, exp: 1_780_003_600_000, nonce: 'AAAAAAAAAAAAAAAAAAAAAA' };

  it('matches an independent encoder of the documented format', () => {
    const messages = [
      sampleTaskMessage(),
      sampleTaskMessage({ eta: '2026-06-01T12:05:00+00:00', timelimit: [10, 5.5], group_index: 3, shadow: 'Zoë 🚀', compression: 'application/x-gzip' }),
      sampleTaskMessage({ timelimit: { nested: [1, { b: true, a: null }] }, retries: -0, expires: undefined }),
    ];
    messages.push({ ...sampleTaskMessage(), properties: { priority: 7, correlation_id: 'c-1' } }, { ...sampleTaskMessage(), properties: { correlation_id: '' } });
    for (const m of messages) {
      assert.deepEqual(canonicalSigningInput(m, claims), reference(m, claims, 2));
      assert.deepEqual(canonicalSigningInput(m, claims, 1), reference(m, claims, 1));
    }
    assert.deepEqual(SIGNED_HEADERS.slice(0, SIGNED_HEADERS_V1.length), SIGNED_HEADERS_V1);
    assert.deepEqual(SIGNED_PROPERTIES, ['priority', 'correlation_id']);
  });

  it('is pinned by a known answer (changing the format needs a new version label)', () => {
    // v1: unchanged since its release, so earlier senders' messages still verify.
    const v1 = canonicalSigningInput(sampleTaskMessage(), claims, 1);
    assert.equal(v1.length, 495);
    assert.equal(createHash('sha256').update(v1).digest('hex'), '346af6f738e8c37e7fa9f09dcb6e9a666efd1ade4b44823f1abea7d4e9dc5070');
    const v2 = canonicalSigningInput(sampleTaskMessage(), claims);
    assert.equal(v2.length, 660);
    assert.equal(createHash('sha256').update(v2).digest('hex'), '45933734a2059b1d54f07adb8200d3dd87b62aa7bc17de5f006acdecbc04f369');
  });
});
