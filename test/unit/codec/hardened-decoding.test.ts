import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeJson, decodeJsonText } from '../../../src/codec/json.ts';
import { decodeMsgpack, encodeMsgpack } from '../../../src/codec/msgpack.ts';
import { decodeByContentType } from '../../../src/codec/serializers.ts';
import { DEFAULT_DECODE_LIMITS } from '../../../src/codec/limits.ts';
import { ContentDisallowedError, DecodeError } from '../../../src/errors.ts';

const limits = { maxBytes: 1024 * 1024, maxDepth: 32, maxItems: 1000 };

describe('hardened JSON decoding', () => {
  it('decodes normal JSON, unicode and surrogate escapes', () => {
    assert.deepEqual(decodeJsonText('[[2, 3], {"name": "Zo\\u00eb", "e": "\\ud83d\\ude80"}, {}]'), [[2, 3], { name: 'Zoë', e: '🚀' }, {}]);
  });

  it('refuses oversized input before parsing', () => {
    assert.throws(() => decodeJson(Buffer.alloc(2 * 1024 * 1024, 0x20), limits), (e: unknown) => e instanceof DecodeError && e.code === 'ERR_TOO_LARGE');
  });

  it('refuses deep nesting without recursion (100,000 levels)', () => {
    const deep = '['.repeat(100_000) + ']'.repeat(100_000);
    assert.throws(() => decodeJsonText(deep, { ...limits, maxBytes: 10_000_000 }), (e: unknown) => e instanceof DecodeError && e.code === 'ERR_TOO_DEEP');
  });

  it('ignores brackets inside strings when measuring depth', () => {
    const s = JSON.stringify(['['.repeat(500), '\\"[[[']);
    assert.deepEqual(decodeJsonText(s, limits), ['['.repeat(500), '\\"[[[']);
  });

  it('refuses containers with too many items', () => {
    assert.throws(() => decodeJsonText(JSON.stringify(new Array(2000).fill(0)), limits), { code: 'ERR_TOO_MANY_ITEMS' });
  });

  it('refuses __proto__ anywhere and constructor/prototype holding objects', () => {
    assert.throws(() => decodeJsonText('[[], {"a": {"__proto__": {"polluted": 1}}}, {}]'), { code: 'ERR_FORBIDDEN_KEY' });
    assert.throws(() => decodeJsonText('{"constructor": {"prototype": {"x": 1}}}'), { code: 'ERR_FORBIDDEN_KEY' });
    assert.deepEqual(decodeJsonText('{"constructor": "Bob"}'), { constructor: 'Bob' });
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  });

  it('refuses the keys when they are spelled with \\u escapes, as text and as bytes', () => {
    for (const text of ['{"\\u005f_proto__": {"polluted": 1}}', '[[], {"a": {"__pr\\u006fto__": 1}}, {}]', '{"construct\\u006fr": {"prototype": {}}}']) {
      assert.throws(() => decodeJsonText(text), { code: 'ERR_FORBIDDEN_KEY' }, text);
      assert.throws(() => decodeJson(Buffer.from(text)), { code: 'ERR_FORBIDDEN_KEY' }, text);
    }
    assert.deepEqual(decodeJsonText('{"name": "Zo\\u00eb"}'), { name: 'Zoë' });
  });

  it('refuses bytes that are not UTF-8 (Python raises UnicodeDecodeError; a lossy decode would change the value)', () => {
    for (const hex of ['5b2280225d', '5b22c3225d', '5b22eda0805d', '5b22f4908080225d']) {
      assert.throws(() => decodeJson(Buffer.from(hex, 'hex')), (e: unknown) => e instanceof DecodeError && /not valid UTF-8/.test(e.message), hex);
    }
    assert.deepEqual(decodeJson(Buffer.from('["zoë 🚀"]')), ['zoë 🚀']);
  });

  it('throws only DecodeError for malformed text', () => {
    for (const bad of ['', '{', '[1,]', 'nul', '"\\x"', '\u0000']) {
      assert.throws(() => decodeJsonText(bad), (e: unknown) => e instanceof DecodeError, bad);
    }
  });
});

describe('hardened msgpack decoding', () => {
  it('round-trips Python-style msgpack', () => {
    const v = [[2, 3], {}, { callbacks: null, errbacks: null, chain: null, chord: null }];
    assert.deepEqual(decodeMsgpack(encodeMsgpack(v)), v);
    assert.equal(encodeMsgpack(v).toString('hex'), '939202038084a963616c6c6261636b73c0a86572726261636b73c0a5636861696ec0a563686f7264c0');
  });

  it('refuses truncated input', () => {
    const b = encodeMsgpack([1, 'hello', { a: [1, 2, 3] }]);
    for (let n = 1; n < b.length; n++) assert.throws(() => decodeMsgpack(b.subarray(0, n)), (e: unknown) => e instanceof DecodeError, `cut at ${n}`);
  });

  it('refuses deep nesting and huge declared lengths before allocating', () => {
    const deep = Buffer.concat([Buffer.alloc(100_000, 0x91), Buffer.from([0xc0])]);
    assert.throws(() => decodeMsgpack(deep, { ...limits, maxBytes: 1e7 }), { code: 'ERR_TOO_DEEP' });
    const huge = Buffer.from([0xdd, 0xff, 0xff, 0xff, 0xff]);
    assert.throws(() => decodeMsgpack(huge, limits), { code: 'ERR_TOO_MANY_ITEMS' });
  });

  it('refuses a __proto__ key (msgpackr would rename it to __proto_ and let the task run), like the JSON path', () => {
    const b = Buffer.from('81a95f5f70726f746f5f5f81a8706f6c6c75746564c3', 'hex'); // {"__proto__": {"polluted": true}}
    assert.throws(() => decodeMsgpack(b), { code: 'ERR_FORBIDDEN_KEY' });
    const nested = encodeMsgpack([[], { a: [{ ['__proto__']: 1 }] }, {}]);
    assert.ok(nested.includes(Buffer.from('a95f5f70726f746f5f5f', 'hex')), 'the key is on the wire');
    assert.throws(() => decodeMsgpack(nested), { code: 'ERR_FORBIDDEN_KEY' });
    assert.throws(() => decodeMsgpack(encodeMsgpack({ constructor: { prototype: {} } })), { code: 'ERR_FORBIDDEN_KEY' });
    assert.deepEqual(decodeMsgpack(encodeMsgpack({ __proto_: 1, constructor: 'Bob' })), { __proto_: 1, constructor: 'Bob' });
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  });

  it('decodes to the JSON data model only: extension types, bin and undefined are refused with a reason', () => {
    const ext = (hex: string): Buffer => Buffer.from(hex, 'hex');
    const cases: Array<[string, Buffer, RegExp]> = [
      ['timestamp 32 (Date)', ext('d6ff00000001'), /extension type -1 \(timestamp\)/],
      ['timestamp 96', ext('c70cff000000000000000000000001'), /extension type -1 \(timestamp\)/],
      ["msgpackr's undefined", ext('91d40000'), /extension type 0 \(undefined/],
      ["msgpackr's BigInt extension", ext('92c70942000000000000000001c0'), /extension type 66 \(BigInt\)/],
      ['typed array', ext('c70374010203'), /extension type 116 \(typed array\)/],
      ['ext 16', ext('c8000105ff'), /extension type 5/],
      ['ext 32', ext('c90000000105ff'), /extension type 5/],
      ['bin 8 (bytes)', ext('c40161'), /bin \(bytes\)/],
      ['bin inside kwargs', ext('9390' + '81a178c40161' + '80'), /bin \(bytes\)/],
      ['nil map key', ext('81c0a161'), /map key of type 0xc0/],
      ['array map key', ext('8190a161'), /map key of type 0x90/],
      ['float map key', ext('81cb3ff8000000000000a161'), /map key of type 0xcb/],
    ];
    for (const [name, bytes, re] of cases) {
      assert.throws(() => decodeMsgpack(bytes), (e: unknown) => e instanceof DecodeError && re.test(e.message) && (e.code === 'ERR_MSGPACK_TYPE' || e.code === 'ERR_INVALID_MSGPACK'), name);
    }
    // Python's int keys arrive as strings, as they would through json.
    assert.deepEqual(decodeMsgpack(ext('8201a16102a162')), { 1: 'a', 2: 'b' });
  });
});

describe('accept list', () => {
  it('refuses pickle and anything not accepted', () => {
    const accept = new Set(['application/json']);
    assert.throws(() => decodeByContentType(Buffer.from('x'), 'application/x-python-serialize', accept, DEFAULT_DECODE_LIMITS), ContentDisallowedError);
    assert.throws(() => decodeByContentType(Buffer.from('[]'), 'application/x-msgpack', accept, DEFAULT_DECODE_LIMITS), ContentDisallowedError);
    assert.deepEqual(decodeByContentType(Buffer.from('[]'), 'application/json', accept, DEFAULT_DECODE_LIMITS), []);
  });
});
