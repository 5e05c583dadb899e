/**
 * kombu's body compression: zlib/gzip (application/x-gzip, zlib data) both
 * ways; every other compression refused with a reason; a bomb refused by
 * the inflation cap (size and ratio) without being inflated past it.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createDeflate, deflateSync, gzipSync } from 'node:zlib';
import { compressBody, compressionContentType, decompressBody, inflateCap, ZLIB_CONTENT_TYPE } from '../../../src/codec/compression.ts';
import { DEFAULT_DECODE_LIMITS } from '../../../src/codec/limits.ts';
import { decodeByContentType, JSON_SERIALIZER } from '../../../src/codec/serializers.ts';
import { DecodeError, ValidationError } from '../../../src/errors.ts';
import { buildTaskMessage } from '../../../src/protocol/task-message.ts';

const accept = new Set(['application/json', 'application/x-msgpack']);

/** zlib data that inflates to `size` zero bytes, built in 1 MiB pieces (never holding `size` bytes). */
async function zeroBomb(size: number): Promise<Buffer> {
  const d = createDeflate({ level: 9 });
  const out: Buffer[] = [];
  d.on('data', (c: Buffer) => out.push(c));
  const done = new Promise((r) => d.on('end', r));
  const piece = Buffer.alloc(1024 * 1024);
  for (let left = size; left > 0; left -= piece.length) {
    if (!d.write(left >= piece.length ? piece : piece.subarray(0, left))) await new Promise((r) => d.once('drain', r));
  }
  d.end();
  await done;
  return Buffer.concat(out);
}

describe('compression (kombu content encodings)', () => {
  // First: the resident-size high-water mark must not already include an earlier big allocation.
  it('a 512 MiB bomb is refused without being inflated past the cap (the process never held the inflated bytes)', async () => {
    const bomb = await zeroBomb(512 * 1024 * 1024);
    assert.ok(bomb.length < 1024 * 1024, `bomb is ${bomb.length} bytes`);
    const before = process.resourceUsage().maxRSS; // KiB
    assert.throws(
      () => decodeByContentType(bomb, 'application/json', accept, { ...DEFAULT_DECODE_LIMITS, maxBytes: 2 * 1024 * 1024 }, { compression: ZLIB_CONTENT_TYPE }),
      (e: unknown) => e instanceof DecodeError && e.code === 'ERR_TOO_LARGE' && /inflates beyond 2097152 bytes/.test(e.message),
    );
    const grewMiB = (process.resourceUsage().maxRSS - before) / 1024;
    assert.ok(grewMiB < 128, `peak resident size grew by ${grewMiB.toFixed(0)} MiB`);
  });

  it('zlib and gzip send kombu application/x-gzip with zlib-format data, as Python zlib.compress', () => {
    assert.equal(compressionContentType('zlib'), 'application/x-gzip');
    assert.equal(compressionContentType('gzip'), 'application/x-gzip');
    const body = Buffer.from('[[2, 3], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]');
    const z = compressBody(body, 'zlib');
    assert.equal(z[0], 0x78, 'zlib header (RFC 1950), not gzip');
    assert.deepEqual(decompressBody(z, ZLIB_CONTENT_TYPE), body);
    const m = buildTaskMessage({ task: 'tasks.add', id: 'c-1', args: [2, 3], kwargs: {}, compression: 'zlib' }, JSON_SERIALIZER);
    assert.equal(m.headers.compression, 'application/x-gzip');
    assert.deepEqual(decodeByContentType(m.body, m.contentType, accept, DEFAULT_DECODE_LIMITS, { compression: m.headers.compression, contentEncoding: m.contentEncoding }), [[2, 3], {}, { callbacks: null, errbacks: null, chain: null, chord: null }]);
  });

  it('refuses bzip2, lzma, brotli, zstd, aliases and non-string headers with a reason; refuses bzip2 on send', () => {
    for (const [header, re] of [
      ['application/x-bz2', /application\/x-bz2 \(bzip2\) is not supported/],
      ['application/x-lzma', /lzma/],
      ['application/x-brotli', /brotli/],
      ['application/zstd', /zstd/],
      ['zlib', /unknown compression "zlib"/],
      [5, /not a MIME type/],
    ] as Array<[unknown, RegExp]>) {
      assert.throws(() => decompressBody(deflateSync('[]'), header), (e: unknown) => e instanceof DecodeError && re.test(e.message), String(header));
    }
    assert.throws(() => compressionContentType('bzip2'), ValidationError);
    assert.throws(() => buildTaskMessage({ task: 't', id: 'x', args: [], kwargs: {}, compression: 'bzip2' as never }, JSON_SERIALIZER), /bzip2/);
  });

  it('refuses gzip-format data, truncated and corrupt streams', () => {
    const body = Buffer.from('[[1], {}, {}]');
    for (const bad of [gzipSync(body), deflateSync(body).subarray(0, 6), Buffer.from('not compressed')]) {
      assert.throws(() => decompressBody(bad, ZLIB_CONTENT_TYPE), (e: unknown) => e instanceof DecodeError && e.code === 'ERR_COMPRESSION');
    }
  });

  it('caps by ratio as well as size: maxInflateRatio × compressed size, 64 KiB always allowed', () => {
    assert.equal(inflateCap(100), 64 * 1024);
    assert.equal(inflateCap(1000), 200_000);
    assert.equal(inflateCap(1024 * 1024), DEFAULT_DECODE_LIMITS.maxBytes);
    // 1 MiB of zeros compresses ~1000:1: refused by ratio long before the 4 MiB size cap
    const z = deflateSync(Buffer.alloc(1024 * 1024));
    assert.throws(() => decompressBody(z, ZLIB_CONTENT_TYPE), { code: 'ERR_TOO_LARGE' });
    assert.equal(decompressBody(z, ZLIB_CONTENT_TYPE, { ...DEFAULT_DECODE_LIMITS, maxInflateRatio: 2000 }).length, 1024 * 1024);
    // ordinary JSON (ratio ~5-20) passes
    const json = Buffer.from(JSON.stringify(Array.from({ length: 20_000 }, (_, i) => ({ id: i, name: `user-${i}`, ok: i % 2 === 0 }))));
    assert.equal(decompressBody(compressBody(json, 'zlib'), ZLIB_CONTENT_TYPE).length, json.length);
  });
});
