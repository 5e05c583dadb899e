/**
 * Integers beyond ±2^53 (Python ints: 2^63+1, −2^63, wider) decode to
 * bigint in JSON and msgpack and encode back as the same integer, or are
 * refused where `decodeLimits.bigIntegers` says so; never rounded.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { decodeJson, decodeJsonText, encodeJson, stringifyJson } from '../../../src/codec/json.ts';
import { DEFAULT_DECODE_LIMITS } from '../../../src/codec/limits.ts';
import { decodeMsgpack, encodeMsgpack } from '../../../src/codec/msgpack.ts';
import { decodeRedisEnvelope, encodeRedisEnvelope } from '../../../src/transport/redis/envelope.ts';
import { DecodeError, ValidationError } from '../../../src/errors.ts';

const P63 = 2n ** 63n;
const refuse = { ...DEFAULT_DECODE_LIMITS, bigIntegers: 'refuse' as const };

describe('exact integers: JSON', () => {
  it("decodes Python's 2^63+1 and −2^63 (and wider) as bigint, and writes them back byte for byte", () => {
    const text = '[[9223372036854775809, -9223372036854775808, 340282366920938463463374607431768211457], {"n": 9007199254740993}, {}]';
    const v = decodeJsonText(text) as [bigint[], { n: bigint }, object];
    assert.deepEqual(v[0], [P63 + 1n, -P63, 2n ** 128n + 1n]);
    assert.equal(v[1].n, 2n ** 53n + 1n);
    assert.equal(stringifyJson(v), text.replace(/, /g, ',').replace(/": /g, '":'));
    assert.deepEqual(decodeJson(encodeJson(v)), v);
  });

  it('keeps numbers that are exact as doubles as numbers: ±2^53, floats with many digits, exponents', () => {
    assert.deepEqual(decodeJsonText('[9007199254740992, -9007199254740992, 1.2345678901234567, 12345678901234567e3, 1E400, 123]'), [2 ** 53, -(2 ** 53), 1.2345678901234567, 12345678901234567e3, Infinity, 123]);
  });

  it('leaves digits inside strings alone, escaped quotes included', () => {
    const text = '{"a": "1234567890123456789012 \\" 99999999999999999999", "b": 99999999999999999999}';
    assert.deepEqual(decodeJsonText(text), { a: '1234567890123456789012 " 99999999999999999999', b: 99999999999999999999n });
  });

  it('a string that looks like the internal marker stays a string', () => {
    const v = decodeJsonText('["\\u0001celeriac-bigint-0000000000000000:5", 12345678901234567890]') as unknown[];
    assert.equal(v[0], '\u0001celeriac-bigint-0000000000000000:5');
    assert.equal(v[1], 12345678901234567890n);
    assert.equal(stringifyJson(['\u0001celeriac-bigint-0000000000000000:5', 1n]), '["\\u0001celeriac-bigint-0000000000000000:5",1]');
  });

  it("refuses with a clear error when decodeLimits.bigIntegers is 'refuse'", () => {
    assert.throws(() => decodeJsonText('[1, 9223372036854775809]', refuse), (e: unknown) => e instanceof DecodeError && e.code === 'ERR_BIG_INTEGER' && /9223372036854775809 is beyond ±2\^53/.test(e.message));
    assert.deepEqual(decodeJsonText('[1, 9007199254740992, "99999999999999999999"]', refuse), [1, 2 ** 53, '99999999999999999999']);
  });

  it('malformed long literals are still refused by the parser', () => {
    for (const bad of ['[00000000000000000001]', '[-]', '[12345678901234567890-]', '[- 12345678901234567890]']) {
      assert.throws(() => decodeJsonText(bad), (e: unknown) => e instanceof DecodeError, bad);
    }
  });

  it('property: any integer, anywhere in a body, round-trips exactly', () => {
    const big = fc.bigInt({ min: -(2n ** 200n), max: 2n ** 200n });
    const leaf = fc.oneof(big, fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.string(), fc.constant(null), fc.boolean());
    const value = fc.letrec((tie) => ({
      v: fc.oneof({ depthSize: 'small' }, leaf, fc.array(tie('v'), { maxLength: 5 }), fc.dictionary(fc.string().filter((k) => !/proto|ructor/.test(k)), tie('v'), { maxKeys: 5 })),
    })).v;
    fc.assert(
      fc.property(value, (v) => {
        // What the text means: an integer literal beyond ±2^53 is that integer (a double that large was
        // already an integer, and is written as one); everything else is what JSON.parse reads.
        const expect = (x: unknown): unknown => {
          if (typeof x === 'bigint') return x > 2n ** 53n || x < -(2n ** 53n) ? x : Number(x);
          if (typeof x === 'number') {
            const text = JSON.stringify(x);
            return Math.abs(x) > 2 ** 53 && /^-?[0-9]+$/.test(text) ? BigInt(text) : Object.is(x, -0) ? 0 : x;
          }
          if (Array.isArray(x)) return x.map(expect);
          if (x !== null && typeof x === 'object') return Object.fromEntries(Object.entries(x).map(([k, y]) => [k, expect(y)]));
          return x;
        };
        assert.deepEqual(decodeJsonText(stringifyJson(v)), expect(v));
      }),
      { numRuns: 300 },
    );
  });
});

describe('exact integers: msgpack', () => {
  it('int64/uint64 beyond ±2^53 decode to bigint and encode back as the same bytes', () => {
    const v = [[P63 + 1n, -P63, 2n ** 64n - 1n, 2n ** 53n, 7], {}, {}];
    const bytes = encodeMsgpack(v);
    assert.deepEqual(decodeMsgpack(bytes), [[P63 + 1n, -P63, 2n ** 64n - 1n, 2 ** 53, 7], {}, {}]);
    assert.ok(bytes.includes(Buffer.from('cf8000000000000001', 'hex')), '2^63+1 as uint64, as Python packs it');
    assert.ok(bytes.includes(Buffer.from('d38000000000000000', 'hex')), '−2^63 as int64');
  });

  it('a bigint wider than 64 bits is refused on encode (never turned into a float)', () => {
    assert.throws(() => encodeMsgpack([2n ** 64n]), ValidationError);
    assert.throws(() => encodeMsgpack([-(2n ** 63n) - 1n]), ValidationError);
  });

  it("refuses beyond ±2^53 when decodeLimits.bigIntegers is 'refuse'", () => {
    assert.throws(() => decodeMsgpack(encodeMsgpack([P63 + 1n]), refuse), { code: 'ERR_BIG_INTEGER' });
    assert.deepEqual(decodeMsgpack(encodeMsgpack([2n ** 53n, 2 ** 40]), refuse), [2 ** 53, 2 ** 40]);
  });
});

describe('exact integers: Redis envelope headers', () => {
  it('a bigint header is written and read back exactly', () => {
    const raw = encodeRedisEnvelope(
      { headers: { id: 'x', big: P63 + 1n }, properties: { correlation_id: 'x' }, contentType: 'application/json', contentEncoding: 'utf-8', body: Buffer.from('[]') },
      { exchange: '', routingKey: 'celery', deliveryTag: 't' },
    );
    assert.match(raw, /"big":9223372036854775809/);
    assert.equal(decodeRedisEnvelope(raw, DEFAULT_DECODE_LIMITS).message.headers.big, P63 + 1n);
  });
});
