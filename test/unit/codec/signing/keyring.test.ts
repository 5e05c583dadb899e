import assert from 'node:assert/strict';
import { createSecretKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { inspect } from 'node:util';
import { describe, it } from 'node:test';
import {
  generateSigningKey,
  KeyRingError,
  MIN_HMAC_SECRET_BYTES,
  parseSigningKeyRing,
  SignatureError,
  SigningError,
  SigningKey,
  SigningKeyRing,
} from '../../../../src/codec/signing/index.ts';
import { ConfigError } from '../../../../src/errors.ts';

const DATA = Buffer.from('canonical input');

function ringError(fn: () => unknown, pattern: RegExp, secret?: string): KeyRingError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof KeyRingError, `expected KeyRingError, got ${String(caught)}`);
  assert.ok(caught instanceof ConfigError);
  assert.equal(caught.code, 'ERR_KEY_RING');
  assert.match(caught.message, pattern);
  if (secret) assert.ok(!caught.message.includes(secret), 'error must not contain key material');
  return caught;
}

describe('signing key ring', () => {
  it('generates Ed25519 keys whose signing line signs and whose verifying line verifies', () => {
    const g = generateSigningKey('ed25519', 'k1');
    assert.match(g.signingLine, /^k1:ed25519-private:[A-Za-z0-9+/]+=*$/);
    assert.match(g.verifyingLine, /^k1:ed25519-public:[A-Za-z0-9+/]+=*$/);
    const signer = parseSigningKeyRing(g.signingLine);
    const verifier = parseSigningKeyRing(g.verifyingLine);
    const key = signer.current();
    assert.equal(key.kid, 'k1');
    assert.equal(key.alg, 'ed25519');
    const sig = key.sign(DATA);
    assert.equal(sig.length, 64);
    assert.equal(verifier.verify('ed25519', 'k1', DATA, sig), true);
    assert.equal(verifier.verify('ed25519', 'k1', Buffer.from('other'), sig), false);
    assert.equal(signer.verify('ed25519', 'k1', DATA, sig), true);
  });

  it('a verify-only ring verifies but cannot sign', () => {
    const g = generateSigningKey('ed25519', 'k1');
    const verifier = parseSigningKeyRing(g.verifyingLine);
    assert.equal(verifier.canSign, false);
    assert.throws(() => verifier.current(), SigningError);
    assert.throws(() => verifier.get('k1')!.sign(DATA), SigningError);
    // Derived the other way round, too.
    const derived = parseSigningKeyRing(g.signingLine).toVerifyOnly();
    assert.equal(derived.canSign, false);
    assert.equal(derived.verifyingText().trim(), g.verifyingLine);
  });

  it('generates HMAC-SHA256 secrets of 32 bytes; the same line signs and verifies', () => {
    const g = generateSigningKey('hmac-sha256', 'h1');
    assert.equal(g.signingLine, g.verifyingLine);
    assert.equal(Buffer.from(g.signingLine.split(':')[2]!, 'base64').length, 32);
    const ring = parseSigningKeyRing(g.signingLine);
    const sig = ring.current().sign(DATA);
    assert.equal(sig.length, 32);
    assert.equal(ring.verify('hmac-sha256', 'h1', DATA, sig), true);
    const flipped = Buffer.from(sig);
    flipped[0]! ^= 1;
    assert.equal(ring.verify('hmac-sha256', 'h1', DATA, flipped), false);
    assert.equal(ring.verify('hmac-sha256', 'h1', DATA, sig.subarray(0, 31)), false);
    assert.equal(ring.verify('hmac-sha256', 'h1', DATA, Buffer.alloc(0)), false);
  });

  it('refuses HMAC secrets shorter than 32 bytes, without echoing them', () => {
    for (const n of [1, 16, 31]) {
      const secret = randomBytes(n).toString('base64');
      ringError(() => parseSigningKeyRing(`short:hmac-sha256:${secret}`), /shorter than the 32-byte minimum/, secret);
    }
    assert.equal(MIN_HMAC_SECRET_BYTES, 32);
    assert.equal(parseSigningKeyRing(`ok:hmac-sha256:${randomBytes(32).toString('base64')}`).size, 1);
    assert.throws(() => new SigningKey('x', 'hmac-sha256', createSecretKey(randomBytes(16))), KeyRingError);
  });

  it('parses several entries, comments and separators; the newest (last) key signs', () => {
    const k1 = generateSigningKey('ed25519', '2024-12');
    const k2 = generateSigningKey('hmac-sha256', '2025-01');
    const k3 = generateSigningKey('ed25519', '2025-06');
    const text = `# signing keys, oldest first\n\n${k1.signingLine}   # retired soon\r\n${k2.signingLine},${k3.signingLine}\n`;
    const ring = parseSigningKeyRing(text);
    assert.deepEqual(ring.kids(), ['2024-12', '2025-01', '2025-06']);
    assert.equal(ring.current().kid, '2025-06');
    assert.equal(ring.size, 3);
    // Environment-variable style: one line, space separated.
    assert.deepEqual(parseSigningKeyRing(`${k1.signingLine} ${k3.signingLine}`).kids(), ['2024-12', '2025-06']);
  });

  it('rotation: add a key (it signs), old signatures still verify, then retire the old key', () => {
    const old = generateSigningKey('ed25519', 'old');
    const neu = generateSigningKey('ed25519', 'new');
    const ring1 = parseSigningKeyRing(old.signingLine);
    const oldSig = ring1.current().sign(DATA);
    const ring2 = parseSigningKeyRing(`${old.signingLine}\n${neu.signingLine}`);
    assert.equal(ring2.current().kid, 'new');
    assert.equal(ring2.verify('ed25519', 'old', DATA, oldSig), true);
    const ring3 = ring2.without('old');
    assert.deepEqual(ring3.kids(), ['new']);
    assert.throws(() => ring3.verify('ed25519', 'old', DATA, oldSig), (e: unknown) => e instanceof SignatureError && e.reason === 'unknown-key');
    assert.deepEqual(ring1.withKey(ring2.get('new')!).kids(), ['old', 'new']);
    assert.throws(() => ring3.without('new'), KeyRingError);
  });

  it('never verifies with a key of another algorithm (no HMAC/Ed25519 confusion)', () => {
    const h = parseSigningKeyRing(generateSigningKey('hmac-sha256', 'k').signingLine);
    assert.equal(h.hasKey('hmac-sha256', 'k'), true);
    assert.equal(h.hasKey('ed25519', 'k'), false);
    assert.equal(h.hasKey('rsa-pss-sha256', 'k'), false);
    assert.throws(() => h.verify('ed25519', 'k', DATA, Buffer.alloc(64)), SignatureError);
  });

  it('rejects malformed lines, naming the line and never the material', () => {
    const secret = randomBytes(32).toString('base64');
    ringError(() => parseSigningKeyRing(''), /empty/);
    ringError(() => parseSigningKeyRing('# only a comment\n'), /empty/);
    ringError(() => parseSigningKeyRing(`k1-hmac-sha256-${secret}`), /line 1: expected an entry/, secret);
    ringError(() => parseSigningKeyRing(`\n-bad:hmac-sha256:${secret}`), /line 2: key id/, secret);
    ringError(() => parseSigningKeyRing(`k1:hmac-sha256:${secret}\nk1:hmac-sha256:${secret}`), /appears twice/, secret);
    ringError(() => parseSigningKeyRing(`k1:rsa:${secret}`), /unknown type/, secret);
    ringError(() => parseSigningKeyRing(`k1:hmac-sha256:${secret.slice(0, -1)}`), /not valid padded standard base64/, secret.slice(0, -1));
    ringError(() => parseSigningKeyRing(`k1:ed25519-private:${secret}`), /does not decode as ed25519-private/, secret);
    const pub = generateSigningKey('ed25519', 'k1').verifyingLine.split(':')[2]!;
    ringError(() => parseSigningKeyRing(`k1:ed25519-private:${pub}`), /does not decode/, pub);
    const ecPriv = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'der', type: 'pkcs8' }).toString('base64');
    ringError(() => parseSigningKeyRing(`k1:ed25519-private:${ecPriv}`), /not an Ed25519 private key/, ecPriv);
    assert.throws(() => generateSigningKey('ed25519', 'bad id'), KeyRingError);
    assert.throws(() => generateSigningKey('rsa' as 'ed25519', 'k'), KeyRingError);
  });

  it('does not print key material via inspect, JSON or string conversion', () => {
    const g = generateSigningKey('hmac-sha256', 'h');
    const material = g.signingLine.split(':')[2]!;
    const ring = parseSigningKeyRing(g.signingLine);
    for (const text of [inspect(ring), inspect(ring.current()), JSON.stringify(ring), JSON.stringify(ring.current()), String(ring.current()), inspect(ring, { showHidden: true, depth: 10 })]) {
      assert.ok(!text.includes(material), text);
      assert.ok(!text.includes(Buffer.from(material, 'base64').toString('hex')), text);
    }
    assert.match(inspect(ring.current()), /kid: "h"/);
  });

  it('builds rings programmatically and refuses duplicates and empty rings', () => {
    const { publicKey, privateKey } = generateKeyPairSync('ed25519');
    const k = new SigningKey('a', 'ed25519', publicKey, privateKey);
    assert.equal(new SigningKeyRing([k]).current().kid, 'a');
    assert.throws(() => new SigningKeyRing([k, k]), KeyRingError);
    assert.throws(() => new SigningKeyRing([]), KeyRingError);
    assert.throws(() => new SigningKey('a', 'ed25519', privateKey), KeyRingError);
    assert.throws(() => new SigningKey('a', 'ed25519', publicKey, generateKeyPairSync('ed448').privateKey), KeyRingError);
  });

  it('Ed25519 verification returns false for wrong-length signatures instead of throwing', () => {
    const ring = parseSigningKeyRing(generateSigningKey('ed25519', 'e').signingLine);
    assert.equal(ring.verify('ed25519', 'e', DATA, Buffer.alloc(63)), false);
    assert.equal(ring.verify('ed25519', 'e', DATA, Buffer.alloc(64)), false);
  });
});
