import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { decodeBase64BytesStrict, decodeBase64Strict, decodeBase64UrlStrict, decodeUtf8Strict, hasLoneSurrogate, parseKeyRingText } from '../../../../src/codec/signing/util.ts';

describe('strict base64', () => {
  it('accepts exactly the canonical padded encoding', () => {
    for (const n of [0, 1, 2, 3, 4, 31, 32, 33, 256]) {
      const b = randomBytes(n);
      assert.deepEqual(decodeBase64Strict(b.toString('base64')), b);
      assert.deepEqual(decodeBase64BytesStrict(Buffer.from(b.toString('base64'))), n === 0 ? undefined : b);
    }
    for (const bad of ['A', 'AA', 'AAA', 'AA=', 'A===', '====', 'AA==AA==', 'AB==', 'AAB=', 'A A=', 'AA\n=', 'AA-_', 'QQ==\n', '\u00c0AAA', 'AAAA====']) {
      assert.equal(decodeBase64Strict(bad), undefined, JSON.stringify(bad));
    }
    assert.equal(decodeBase64BytesStrict(Buffer.from([0x41, 0x41, 0x41, 0xc1])), undefined);
  });

  it('scans megabytes without overflowing the stack (no backtracking regex)', () => {
    const big = randomBytes(12 * 1024 * 1024).toString('base64');
    assert.equal(decodeBase64Strict(big)?.length, 12 * 1024 * 1024);
    assert.equal(decodeBase64Strict(`${big.slice(0, -4)}!AAA`), undefined);
    assert.equal(decodeBase64UrlStrict(randomBytes(9 * 1024 * 1024).toString('base64url'))?.length, 9 * 1024 * 1024);
  });

  it('accepts nothing outside the alphabet and its padding, whatever Node\'s lenient decoder skips (20,000 random strings)', () => {
    const CANONICAL = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
    const CANONICAL_URL = /^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-]{2,3})?$/;
    const chars = 'AQgw09+/-_= \n.\u00e9';
    let accepted = 0;
    for (let i = 0; i < 20_000; i++) {
      let s = '';
      for (let n = i % 13; n > 0; n--) s += chars[Math.floor(Math.random() * chars.length)];
      const std = decodeBase64Strict(s);
      if (std) {
        accepted++;
        assert.match(s, CANONICAL);
        assert.equal(std.toString('base64'), s);
      }
      const url = decodeBase64UrlStrict(s);
      if (url) {
        assert.match(s, CANONICAL_URL);
        assert.equal(url.toString('base64url'), s);
      }
    }
    assert.ok(accepted > 0);
  });

  it('base64url: canonical, unpadded', () => {
    const b = randomBytes(16);
    assert.deepEqual(decodeBase64UrlStrict(b.toString('base64url')), b);
    assert.equal(decodeBase64UrlStrict(`${b.toString('base64url')}==`), undefined);
    assert.equal(decodeBase64UrlStrict(b.toString('base64').replace(/=+$/, '').replace(/[A-Za-z0-9]/g, '+')), undefined);
  });
});

describe('text helpers', () => {
  it('decodes only valid UTF-8 and spots lone surrogates', () => {
    assert.equal(decodeUtf8Strict(Buffer.from('Zoë 🚀')), 'Zoë 🚀');
    assert.equal(decodeUtf8Strict(Buffer.from([0xff])), undefined);
    assert.equal(decodeUtf8Strict(Buffer.from([0xed, 0xa0, 0x80])), undefined);
    assert.equal(hasLoneSurrogate('ok 🚀'), false);
    assert.equal(hasLoneSurrogate('\uD800'), true);
    assert.equal(hasLoneSurrogate('a\uDC00b'), true);
    assert.equal(hasLoneSurrogate('\uDC00\uD800'), true);
  });

  it('parses key-ring text with comments, CRLF, BOM and separators', () => {
    const a = randomBytes(32).toString('base64');
    const lines = parseKeyRingText(`\uFEFF# header\r\nk1:t:${a} # trailing\r\n\r\nk2:t:${a}, k3:t:${a};k4:t:${a}\n`, 'ring');
    assert.deepEqual(lines.map((l) => [l.kid, l.type, l.line]), [['k1', 't', 2], ['k2', 't', 4], ['k3', 't', 4], ['k4', 't', 4]]);
  });
});
