/**
 * Issue 20 #12: all-zero, repeated-byte and hand-written HMAC and AES keys
 * used to load silently. Key-ring text with such a key is refused, naming
 * the line and the reason, never the key.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { parseResultKeyRing } from '../../../../src/codec/encryption.ts';
import { parseSigningKeyRing } from '../../../../src/codec/signing/index.ts';
import { nonRandomKeyReason } from '../../../../src/codec/signing/util.ts';
import { generateSecret } from '../../../../src/secrets/generate.ts';

const b64 = (b: Buffer): string => b.toString('base64');
const WEAK: Array<[string, Buffer]> = [
  ['all zero', Buffer.alloc(32)],
  ['repeated byte', Buffer.alloc(32, 0x41)],
  ['two-byte pattern', Buffer.from('ab'.repeat(16), 'latin1')],
  ['eight-byte pattern', Buffer.from('deadbeefcafebabe'.repeat(4), 'hex')],
  ['counting sequence', Buffer.from(Array.from({ length: 32 }, (_, i) => i))],
  ['typed text', Buffer.from('my-super-secret-hmac-key-2024!!!', 'utf8')],
  ['hex digits as text', Buffer.from('0123456789abcdef0123456789abcdef', 'utf8')],
  ['few distinct values', Buffer.from(Array.from({ length: 32 }, (_, i) => [0, 1, 2, 3, 250][(i * 7) % 5]!))],
];

describe('non-random key material (issue 20 #12)', () => {
  for (const [name, key] of WEAK) {
    it(`refuses a ${name} key in HMAC and AES rings`, () => {
      assert.ok(nonRandomKeyReason(key), name);
      const text = b64(key);
      for (const parse of [() => parseSigningKeyRing(`k1:hmac-sha256:${text}`), () => parseResultKeyRing(`k1:aes-256-gcm:${text}`)]) {
        assert.throws(parse, (e: Error) => /line 1: key k1 is not a random/.test(e.message) && !e.message.includes(text) && /celeriac secrets generate/.test(String((e as { hint?: string }).hint)));
      }
    });
  }

  it('never refuses random or generated keys', async () => {
    for (let i = 0; i < 5000; i++) assert.equal(nonRandomKeyReason(randomBytes(32)), undefined);
    for (let i = 0; i < 50; i++) {
      const hmac = (await generateSecret('hmac')).items[0]!.value;
      const aes = (await generateSecret('aes-key')).items[0]!.value;
      assert.doesNotThrow(() => parseSigningKeyRing(hmac));
      assert.doesNotThrow(() => parseResultKeyRing(aes));
    }
  });
});
