import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { inspect } from 'node:util';
import { describe, it } from 'node:test';
import {
  decryptResult,
  DecryptError,
  ENCRYPTED_RESULT_EXCEPTION,
  ENCRYPTED_FIELD,
  encryptResult,
  generateResultKey,
  isEncryptedResult,
  parseResultKeyRing,
  ResultKeyRing,
  type DecryptFailure,
} from '../../../src/codec/encryption.ts';
import { encodeMsgpack } from '../../../src/codec/msgpack.ts';
import { KeyRingError } from '../../../src/codec/signing/index.ts';
import { DecodeError } from '../../../src/errors.ts';
import { parseResultMeta } from '../../../src/protocol/result-meta.ts';

const TASK = 'f84e2523-cf2a-48b1-8390-437cb52f3f28';
const OTHER = '8e2eaf09-0b30-466a-84de-f583aa620125';
const SECRET = 'TOP-SECRET-RESULT-VALUE-4242';
const DATE = '2026-11-24T06:19:26.498356';

const k1 = generateResultKey('k1');
const k2 = generateResultKey('k2');
const ring = parseResultKeyRing(k1);

function metaBytes(status = 'SUCCESS', result: unknown = { secret: SECRET, n: 5 }): Buffer {
  return Buffer.from(JSON.stringify({ status, result, traceback: status === 'FAILURE' ? `Traceback: ${SECRET}` : null, children: [[['child-id', null], null]], date_done: DATE, group_id: 'grp', task_id: TASK }));
}

function fails(fn: () => unknown, reason: DecryptFailure): DecryptError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof DecryptError, `expected DecryptError(${reason}), got ${String(caught)}`);
  assert.ok(caught instanceof DecodeError);
  assert.equal(caught.reason, reason, caught.message);
  assert.equal(caught.code, 'ERR_DECRYPT');
  assert.ok(!caught.message.includes(SECRET));
  return caught;
}

function edit(payload: Buffer, fn: (record: Record<string, any>) => void): Buffer {
  const r = JSON.parse(payload.toString('utf8'));
  fn(r);
  return Buffer.from(JSON.stringify(r));
}

describe('result encryption', () => {
  it('round-trips JSON meta', () => {
    const plain = metaBytes();
    const stored = encryptResult(plain, { taskId: TASK, status: 'SUCCESS', dateDone: DATE }, ring);
    assert.deepEqual(decryptResult(stored, TASK, ring), plain);
    assert.equal(isEncryptedResult(stored), true);
  });

  it('round-trips msgpack meta (any bytes)', () => {
    const plain = encodeMsgpack({ status: 'SUCCESS', result: Buffer.from([0, 1, 2, 255]), task_id: TASK });
    const stored = encryptResult(plain, { taskId: TASK, status: 'SUCCESS', dateDone: null }, ring);
    // Byte for byte: msgpack decoding is data-only and refuses bin, but the record carries any bytes.
    assert.deepEqual(decryptResult(stored, TASK, ring), plain);
    const empty = encryptResult(Buffer.alloc(0), { taskId: TASK, status: 'STARTED', dateDone: null }, ring);
    assert.equal(decryptResult(empty, TASK, ring).length, 0);
  });

  it('stores a Celery-shaped record that keeps status, task_id and date_done, and hides everything else', () => {
    const stored = encryptResult(metaBytes(), { taskId: TASK, status: 'SUCCESS', dateDone: DATE }, ring);
    const r = JSON.parse(stored.toString());
    assert.deepEqual(Object.keys(r), ['celeriac_encrypted', 'status', 'result', 'traceback', 'children', 'date_done', 'task_id']);
    assert.equal(r.status, 'SUCCESS');
    assert.equal(r.result, null);
    assert.equal(r.traceback, null);
    assert.deepEqual(r.children, []);
    assert.equal(r.date_done, DATE);
    assert.equal(r.task_id, TASK);
    const e = r.celeriac_encrypted;
    assert.deepEqual(Object.keys(e), ['v', 'alg', 'kid', 'iv', 'ct', 'tag']);
    assert.equal(e.v, 1);
    assert.equal(e.alg, 'A256GCM');
    assert.equal(e.kid, 'k1');
    assert.equal(Buffer.from(e.iv, 'base64').length, 12);
    assert.equal(Buffer.from(e.tag, 'base64').length, 16);
    // A Celeriac client without the key still sees a valid record.
    assert.equal(parseResultMeta(r, TASK).status, 'SUCCESS');
  });

  it('puts an explanatory exception in FAILURE, REVOKED and RETRY records', () => {
    for (const status of ['FAILURE', 'REVOKED', 'RETRY']) {
      const r = JSON.parse(encryptResult(metaBytes(status), { taskId: TASK, status, dateDone: status === 'RETRY' ? null : DATE }, ring).toString());
      assert.deepEqual(r.result, { exc_type: 'EncryptedResult', exc_message: ['result encrypted by Celeriac; read it with a Celeriac client'], exc_module: 'celeriac' });
      assert.deepEqual(r.result, JSON.parse(JSON.stringify(ENCRYPTED_RESULT_EXCEPTION)));
      assert.equal(r.traceback, null);
    }
    for (const status of ['SUCCESS', 'STARTED', 'PROGRESS']) {
      assert.equal(JSON.parse(encryptResult(metaBytes(status), { taskId: TASK, status, dateDone: null }, ring).toString()).result, null);
    }
  });

  it('the raw stored bytes contain no plaintext of the result', () => {
    const plain = metaBytes('FAILURE');
    const stored = encryptResult(plain, { taskId: TASK, status: 'FAILURE', dateDone: DATE }, ring);
    // Short needles are looked for outside the base64 fields: random ciphertext spells "grp" now and then.
    const record = JSON.parse(stored.toString());
    const visible = JSON.stringify({ ...record, [ENCRYPTED_FIELD]: { ...record[ENCRYPTED_FIELD], iv: '', ct: '', tag: '' } });
    for (const needle of [SECRET, 'secret', 'Traceback', 'child-id', 'grp', '"n":5']) assert.ok(!visible.includes(needle), needle);
    assert.ok(!stored.includes(Buffer.from(SECRET)), 'secret in the raw bytes');
    // Nor any 12-byte window of the hidden values (result, traceback, children), nor their base64.
    const meta = JSON.parse(plain.toString());
    for (const value of [JSON.stringify(meta.result), meta.traceback as string, JSON.stringify(meta.children)]) {
      const bytes = Buffer.from(value);
      assert.ok(bytes.length >= 12);
      for (let i = 0; i + 12 <= bytes.length; i++) assert.ok(!stored.includes(bytes.subarray(i, i + 12)), `${value} window at ${i}`);
    }
    assert.ok(!stored.toString('latin1').includes(Buffer.from(SECRET).toString('base64').slice(0, 16)));
  });

  it('encrypts the same meta differently every time (random IV)', () => {
    const a = encryptResult(metaBytes(), { taskId: TASK, status: 'SUCCESS', dateDone: DATE }, ring);
    const b = encryptResult(metaBytes(), { taskId: TASK, status: 'SUCCESS', dateDone: DATE }, ring);
    assert.notDeepEqual(a, b);
    assert.notEqual(JSON.parse(a.toString()).celeriac_encrypted.iv, JSON.parse(b.toString()).celeriac_encrypted.iv);
  });

  it('is bound to the task id: asking for another id fails, and so does a record moved to another id', () => {
    const stored = encryptResult(metaBytes(), { taskId: TASK, status: 'SUCCESS', dateDone: DATE }, ring);
    fails(() => decryptResult(stored, OTHER, ring), 'wrong-task-id');
    const moved = edit(stored, (r) => (r.task_id = OTHER));
    fails(() => decryptResult(moved, OTHER, ring), 'bad-tag');
  });

  it('binds the visible status and date_done', () => {
    const stored = encryptResult(metaBytes(), { taskId: TASK, status: 'SUCCESS', dateDone: DATE }, ring);
    fails(() => decryptResult(edit(stored, (r) => (r.status = 'FAILURE')), TASK, ring), 'bad-tag');
    fails(() => decryptResult(edit(stored, (r) => (r.date_done = null)), TASK, ring), 'bad-tag');
    fails(() => decryptResult(edit(stored, (r) => (r.date_done = '2026-11-24T06:19:26.498357')), TASK, ring), 'bad-tag');
    // Fields outside the binding (Python's view) may change without affecting decryption.
    assert.deepEqual(decryptResult(edit(stored, (r) => (r.children = [1])), TASK, ring), metaBytes());
  });

  it('detects a tampered tag, ciphertext or IV', () => {
    const stored = encryptResult(metaBytes(), { taskId: TASK, status: 'SUCCESS', dateDone: DATE }, ring);
    const flip = (b64: string): string => {
      const b = Buffer.from(b64, 'base64');
      b[0]! ^= 1;
      return b.toString('base64');
    };
    for (const field of ['tag', 'ct', 'iv']) {
      fails(() => decryptResult(edit(stored, (r) => (r.celeriac_encrypted[field] = flip(r.celeriac_encrypted[field]))), TASK, ring), 'bad-tag');
    }
    fails(() => decryptResult(edit(stored, (r) => (r.celeriac_encrypted.ct = r.celeriac_encrypted.ct.slice(0, -4))), TASK, ring), 'bad-tag');
  });

  it('rejects an unknown kid and a kid swapped to another key of the ring', () => {
    const stored = encryptResult(metaBytes(), { taskId: TASK, status: 'SUCCESS', dateDone: DATE }, ring);
    fails(() => decryptResult(stored, TASK, parseResultKeyRing(k2)), 'unknown-key');
    const both = parseResultKeyRing(`${k1}\n${k2}`);
    fails(() => decryptResult(edit(stored, (r) => (r.celeriac_encrypted.kid = 'k2')), TASK, both), 'bad-tag');
    fails(() => decryptResult(edit(stored, (r) => (r.celeriac_encrypted.kid = 'nope')), TASK, both), 'unknown-key');
    // Same kid, different key material (another deployment): authentication fails.
    fails(() => decryptResult(stored, TASK, parseResultKeyRing(generateResultKey('k1'))), 'bad-tag');
  });

  it('rotation: the newest key encrypts, old records stay readable until the old key is retired', () => {
    const old = encryptResult(metaBytes(), { taskId: TASK, status: 'SUCCESS', dateDone: DATE }, ring);
    const rotated = parseResultKeyRing(`${k1}\n${k2}`);
    assert.equal(rotated.current().kid, 'k2');
    const neu = encryptResult(metaBytes(), { taskId: TASK, status: 'SUCCESS', dateDone: DATE }, rotated);
    assert.equal(JSON.parse(neu.toString()).celeriac_encrypted.kid, 'k2');
    assert.deepEqual(decryptResult(old, TASK, rotated), metaBytes());
    assert.deepEqual(decryptResult(neu, TASK, rotated), metaBytes());
    const retired = rotated.without('k1');
    assert.deepEqual(decryptResult(neu, TASK, retired), metaBytes());
    fails(() => decryptResult(old, TASK, retired), 'unknown-key');
  });

  it('recognises encrypted records cheaply and precisely', () => {
    const stored = encryptResult(metaBytes(), { taskId: TASK, status: 'SUCCESS', dateDone: DATE }, ring);
    assert.equal(isEncryptedResult(stored), true);
    // A store that re-formats JSON (key order, spacing) is still recognised.
    const r = JSON.parse(stored.toString());
    const reordered = Buffer.from(JSON.stringify({ status: r.status, task_id: r.task_id, celeriac_encrypted: r.celeriac_encrypted }, null, 2));
    assert.equal(isEncryptedResult(reordered), true);
    assert.deepEqual(decryptResult(Buffer.from(JSON.stringify({ ...r, celeriac_encrypted: r.celeriac_encrypted }, null, 1)), TASK, ring), metaBytes());
    // Plain records, including one whose result mentions the field name, are not.
    const captured = JSON.parse(readFileSync(new URL('../../fixtures/celery-5.2.6/results/task_results.json', import.meta.url), 'utf8'));
    const records = Object.values(captured.results as Record<string, { raw_value: string }>);
    assert.ok(records.length > 10);
    for (const rec of records) assert.equal(isEncryptedResult(Buffer.from(rec.raw_value)), false);
    assert.equal(isEncryptedResult(Buffer.from('{"status": "SUCCESS", "result": {"celeriac_encrypted": 1}, "task_id": "x"}')), false);
    assert.equal(isEncryptedResult(Buffer.from('{"celeriac_encrypted":')), true, 'our prefix; decrypt reports it as malformed');
    assert.equal(isEncryptedResult(Buffer.from('garbage "celeriac_encrypted"')), false);
    assert.equal(isEncryptedResult(Buffer.alloc(0)), false);
    fails(() => decryptResult(Buffer.from('{"celeriac_encrypted":'), TASK, ring), 'malformed');
  });

  it('reports plain and malformed records', () => {
    fails(() => decryptResult(Buffer.from('{"status": "SUCCESS", "result": 5, "task_id": "x"}'), 'x', ring), 'not-encrypted');
    fails(() => decryptResult(Buffer.from('not json'), TASK, ring), 'malformed');
    fails(() => decryptResult(Buffer.from('[1,2]'), TASK, ring), 'malformed');
    fails(() => decryptResult(Buffer.from('{"__proto__": {"x": 1}, "celeriac_encrypted": {}}'), TASK, ring), 'malformed');
    const stored = encryptResult(metaBytes(), { taskId: TASK, status: 'SUCCESS', dateDone: DATE }, ring);
    fails(() => decryptResult(edit(stored, (r) => (r.celeriac_encrypted.v = 2)), TASK, ring), 'malformed');
    fails(() => decryptResult(edit(stored, (r) => (r.celeriac_encrypted.alg = 'A128GCM')), TASK, ring), 'malformed');
    fails(() => decryptResult(edit(stored, (r) => (r.celeriac_encrypted.extra = 1)), TASK, ring), 'malformed');
    fails(() => decryptResult(edit(stored, (r) => (r.celeriac_encrypted.iv = 'AAAA')), TASK, ring), 'malformed');
    fails(() => decryptResult(edit(stored, (r) => (r.celeriac_encrypted.tag = 'not base64')), TASK, ring), 'malformed');
    fails(() => decryptResult(edit(stored, (r) => delete r.task_id), TASK, ring), 'malformed');
    fails(() => decryptResult(edit(stored, (r) => (r.status = 5)), TASK, ring), 'malformed');
    fails(() => decryptResult(edit(stored, (r) => (r.celeriac_encrypted = 'x')), TASK, ring), 'malformed');
  });

  it('handles large results within the decode limits, and refuses larger ones with a typed error', () => {
    const big = Buffer.from(JSON.stringify({ status: 'SUCCESS', result: 'x'.repeat(4 * 1024 * 1024 - 100), task_id: TASK }));
    const stored = encryptResult(big, { taskId: TASK, status: 'SUCCESS', dateDone: DATE }, ring);
    assert.ok(stored.length > 5 * 1024 * 1024);
    assert.deepEqual(decryptResult(stored, TASK, ring), big);
    const huge = encryptResult(Buffer.alloc(6 * 1024 * 1024, 0x78), { taskId: TASK, status: 'SUCCESS', dateDone: DATE }, ring);
    fails(() => decryptResult(huge, TASK, ring), 'malformed');
    assert.equal(isEncryptedResult(huge), true);
    assert.deepEqual(decryptResult(huge, TASK, ring, { maxBytes: 8 * 1024 * 1024, maxDepth: 64, maxItems: 100_000 }).length, 6 * 1024 * 1024);
  });
});

describe('result key ring', () => {
  it('generates 32-byte keys in the documented text format', () => {
    assert.match(k1, /^k1:aes-256-gcm:[A-Za-z0-9+/]{43}=$/);
    assert.equal(Buffer.from(k1.split(':')[2]!, 'base64').length, 32);
    const r = parseResultKeyRing(`# results\n${k1}\n\n${k2}  # newest\n`);
    assert.deepEqual(r.kids(), ['k1', 'k2']);
    assert.equal(r.size, 2);
    assert.equal(r.current().kid, 'k2');
  });

  it('refuses wrong sizes, types, duplicates and empty rings without echoing keys', () => {
    const short = randomBytes(16).toString('base64');
    for (const [text, pattern] of [
      [`k:aes-256-gcm:${short}`, /16 bytes; AES-256-GCM needs exactly 32/],
      [`k:aes-128-gcm:${randomBytes(32).toString('base64')}`, /unknown type/],
      [`${k1}\n${k1}`, /appears twice/],
      ['', /empty/],
    ] as const) {
      let caught: unknown;
      try {
        parseResultKeyRing(text);
      } catch (err) {
        caught = err;
      }
      assert.ok(caught instanceof KeyRingError, String(caught));
      assert.match(caught.message, pattern);
      assert.ok(!caught.message.includes(short) && !caught.message.includes(k1.split(':')[2]!));
    }
    assert.throws(() => new ResultKeyRing([{ kid: 'k', key: randomBytes(31) }]), KeyRingError);
    assert.throws(() => new ResultKeyRing([{ kid: 'bad kid', key: randomBytes(32) }]), KeyRingError);
    assert.throws(() => generateResultKey('no spaces'), KeyRingError);
  });

  it('never prints key material', () => {
    const material = k1.split(':')[2]!;
    const r = parseResultKeyRing(k1);
    for (const text of [inspect(r), inspect(r.current()), JSON.stringify(r), JSON.stringify(r.current()), inspect(r, { showHidden: true, depth: 5 })]) {
      assert.ok(!text.includes(material), text);
      assert.ok(!text.includes(Buffer.from(material, 'base64').toString('hex')), text);
    }
  });

  it('accepts raw 32-byte buffers programmatically', () => {
    const r = new ResultKeyRing([{ kid: 'raw', key: randomBytes(32) }]);
    const stored = encryptResult(metaBytes(), { taskId: TASK, status: 'SUCCESS', dateDone: DATE }, r);
    assert.deepEqual(decryptResult(stored, TASK, r), metaBytes());
  });
});

describe('content key derivation', () => {
  it('the cached single-block HKDF equals hkdfSync', async () => {
    const { contentKey, contentKeyReference } = await import('../../../src/codec/encryption.ts');
    const { createSecretKey, randomBytes } = await import('node:crypto');
    for (let i = 0; i < 50; i++) {
      const k = createSecretKey(randomBytes(32));
      const id = randomBytes(8).toString('hex') + '-é';
      assert.deepEqual(contentKey(k, id), contentKeyReference(k, id));
      assert.deepEqual(contentKey(k, id), contentKeyReference(k, id), 'second call (cached PRK)');
    }
  });
});

describe('stored record format', () => {
  // Throwaway test key (32 bytes of 7s). Records written by the encoder before the PRK was kept
  // as bytes and the record text written directly (commit a531692): what is stored must stay readable.
  const goldenRing = new ResultKeyRing([{ kid: 'golden-k1', key: Buffer.alloc(32, 7) }]);
  const golden = [
    {
      taskId: 'f84e2523-cf2a-48b1-8390-437cb52f3f28',
      meta: '{"status":"SUCCESS","result":"vector"}',
      record:
        '{"celeriac_encrypted":{"v":1,"alg":"A256GCM","kid":"golden-k1","iv":"n8FVCFKY0lzTJTOa","ct":"Ncan+jAkUZPvguIyyaHET9A+yK0sRkqbYke25ZMa5VUVkH2B1zM=","tag":"w8b6CdBUGXbCcaWUu2QxjQ=="},"status":"SUCCESS","result":null,"traceback":null,"children":[],"date_done":"2026-11-24T06:19:26.498356","task_id":"f84e2523-cf2a-48b1-8390-437cb52f3f28"}',
    },
    {
      taskId: 'tâche-é-😀',
      meta: '{"status":"FAILURE","result":"vector"}',
      record:
        '{"celeriac_encrypted":{"v":1,"alg":"A256GCM","kid":"golden-k1","iv":"lDCGUW/bR44danyG","ct":"ccSE76nTgKdgZy5akR5mM01WY9wwCjyI6ptVKC6nZ26khGL+sVo=","tag":"VyuJyWsPPlOdfKM5ZWpCmQ=="},"status":"FAILURE","result":{"exc_type":"EncryptedResult","exc_message":["result encrypted by Celeriac; read it with a Celeriac client"],"exc_module":"celeriac"},"traceback":null,"children":[],"date_done":null,"task_id":"tâche-é-😀"}',
    },
  ];

  it('decrypts records written by the earlier encoder (same key derivation and associated data)', () => {
    for (const g of golden) {
      assert.equal(decryptResult(Buffer.from(g.record), g.taskId, goldenRing).toString(), g.meta);
      // A record the current encoder writes for the same input has the same shape, field for field.
      const fresh = JSON.parse(encryptResult(Buffer.from(g.meta), { taskId: g.taskId, status: JSON.parse(g.meta).status, dateDone: JSON.parse(g.record).date_done }, goldenRing).toString());
      const old = JSON.parse(g.record);
      assert.deepEqual(Object.keys(fresh), Object.keys(old));
      assert.deepEqual({ ...fresh, celeriac_encrypted: Object.keys(fresh.celeriac_encrypted) }, { ...old, celeriac_encrypted: Object.keys(old.celeriac_encrypted) });
    }
  });

  it('writes the record text exactly as JSON.stringify writes the object', async () => {
    const { encryptedRecordText } = await import('../../../src/codec/encryption.ts');
    const ids = [TASK, 'quote"back\\slash', 'ctl\u0001\n\t', 'tâche-😀', '\u2028\u2029', 'x'.repeat(300)];
    for (const taskId of ids) {
      for (const status of ['SUCCESS', 'FAILURE', 'REVOKED', 'RETRY', 'PENDING', 'CUSTOM"STATE']) {
        for (const dateDone of [DATE, null, 'date"with\\escapes']) {
          for (const kid of ['k1', 'a.b_c-2026']) {
            const object = {
              [ENCRYPTED_FIELD]: { v: 1, alg: 'A256GCM', kid, iv: 'AAAAAAAAAAAAAAAA', ct: 'Y3Q+/w==', tag: 'dGFnAAAAAAAAAAAAAAAAAA==' },
              status,
              result: ['FAILURE', 'REVOKED', 'RETRY'].includes(status) ? ENCRYPTED_RESULT_EXCEPTION : null,
              traceback: null,
              children: [],
              date_done: dateDone,
              task_id: taskId,
            };
            assert.equal(encryptedRecordText(kid, 'AAAAAAAAAAAAAAAA', 'Y3Q+/w==', 'dGFnAAAAAAAAAAAAAAAAAA==', { taskId, status, dateDone }), JSON.stringify(object));
          }
        }
      }
    }
  });

  it('round-trips task ids, statuses and dates that need escaping', () => {
    for (const taskId of ['quote"back\\slash', 'tâche-😀', 'ctl\u0001']) {
      const stored = encryptResult(metaBytes(), { taskId, status: 'SUCCESS', dateDone: 'd"\\' }, ring);
      assert.equal(JSON.parse(stored.toString()).task_id, taskId);
      assert.deepEqual(decryptResult(stored, taskId, ring), metaBytes());
    }
  });
});
