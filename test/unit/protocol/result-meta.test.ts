import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ResultStore } from '../../../src/client/results.ts';
import { createMemoryBackend } from '../../../src/transport/memory/backend.ts';
import { MSGPACK_SERIALIZER } from '../../../src/codec/serializers.ts';
import { RemoteTaskError } from '../../../src/errors.ts';
import { buildResultMeta, errorToExceptionInfo, parseResultMeta, remoteErrorFromMeta } from '../../../src/protocol/result-meta.ts';
import { readVector } from '../../helpers/fixtures.ts';

interface Rec { raw_value?: string; raw_value_hex?: string; decoded: Record<string, unknown> }
const runA = readVector<{ results: Record<string, Rec> }>('results/task_results.json').results;
const extended = readVector<{ results: Record<string, Rec> }>('results/extended_task_results.json').results;
const msgpack = readVector<{ results: Record<string, Rec> }>('results/msgpack_task_results.json').results;

describe('result records written by Celery 5.2.6', () => {
  const store = new ResultStore(createMemoryBackend());
  for (const [name, rec] of Object.entries({ ...runA, ...prefixed('ext_', extended), ...prefixed('mp_', msgpack) })) {
    it(`decodes ${name}`, () => {
      const bytes = rec.raw_value !== undefined ? Buffer.from(rec.raw_value) : Buffer.from(rec.raw_value_hex!, 'hex');
      const { traceback, ...meta } = store.decode(bytes, String(rec.decoded.task_id));
      const { traceback: expectedTb, ...expected } = rec.decoded;
      assert.deepEqual(meta, { ...expected, result: expected.result ?? null });
      // The capture rewrote file paths in the decoded copy of one traceback; compare its last line.
      assert.equal(traceback?.trim().split('\n').pop() ?? null, (expectedTb as string | null)?.trim().split('\n').pop() ?? null);
    });
  }

  it('rebuilds a SUCCESS record byte-for-byte in field order', () => {
    const rec = runA.add_delay!;
    const d = rec.decoded;
    const meta = buildResultMeta({ taskId: String(d.task_id), status: 'SUCCESS', result: d.result }, Date.parse(`${String(d.date_done)}Z`));
    // Python writes microseconds; JS has milliseconds.
    const expected = { ...d, date_done: String(d.date_done).slice(0, 23) + '000' };
    assert.deepEqual(Object.keys(meta), Object.keys(d));
    assert.deepEqual(meta, expected);
  });

  it('writes extended fields in Celery order', () => {
    const d = Object.values(extended).find((r) => r.decoded.status === 'SUCCESS')!.decoded;
    const meta = buildResultMeta({
      taskId: String(d.task_id),
      status: 'SUCCESS',
      result: d.result,
      extended: { name: String(d.name), args: d.args as unknown[], kwargs: d.kwargs as Record<string, unknown>, worker: String(d.worker), retries: Number(d.retries), queue: String(d.queue) },
    });
    assert.deepEqual(Object.keys(meta), Object.keys(d));
  });

  it('turns a Python FAILURE into RemoteTaskError without resolving anything', () => {
    const fail = Object.values(runA).find((r) => r.decoded.status === 'FAILURE' && (r.decoded.result as { exc_type: string }).exc_type === 'ValueError')!;
    const err = remoteErrorFromMeta(parseResultMeta(fail.decoded));
    assert.ok(err instanceof RemoteTaskError);
    assert.equal(err.excType, 'ValueError');
    assert.equal(err.excModule, 'builtins');
    assert.deepEqual(err.excMessage, ['bad value']);
    assert.match(err.remoteTraceback ?? '', /ValueError/);
  });

  it('reads a hostile record as plain strings (no lookup by name)', () => {
    const err = remoteErrorFromMeta(parseResultMeta({ status: 'FAILURE', task_id: 'x', result: { exc_type: 'os.system', exc_module: 'os', exc_message: 'rm -rf /' } }));
    assert.equal(err.excType, 'os.system');
    assert.deepEqual(err.excMessage, ['rm -rf /']);
  });

  it('refuses a record for another task id', () => {
    assert.throws(() => parseResultMeta({ status: 'SUCCESS', task_id: 'a', result: 1 }, 'b'), /belongs to task a/);
  });
});

describe('errorToExceptionInfo', () => {
  it('maps JS errors to Celery exception records', () => {
    assert.deepEqual(errorToExceptionInfo(new TypeError('x')), { exc_type: 'TypeError', exc_message: ['x'], exc_module: 'builtins' });
    const e = Object.assign(new Error('nope'), { name: 'KeyError' });
    assert.equal(errorToExceptionInfo(e).exc_type, 'KeyError');
    assert.equal(errorToExceptionInfo(Object.assign(new Error('x'), { name: 'bad name; rm' })).exc_type, 'Error');
    assert.deepEqual(errorToExceptionInfo('plain'), { exc_type: 'Exception', exc_message: ['plain'], exc_module: 'builtins' });
  });
});

describe('ResultStore', () => {
  it('writes msgpack records when asked and reads both formats', async () => {
    const backend = createMemoryBackend();
    const store = new ResultStore(backend, { serializer: MSGPACK_SERIALIZER });
    await store.store(buildResultMeta({ taskId: 't1', status: 'SUCCESS', result: { a: [1, 2] } }));
    const raw = await backend.get('t1');
    assert.equal(raw![0]! & 0xf0, 0x80);
    assert.deepEqual((await store.get('t1')).result, { a: [1, 2] });
  });

  it('waits for a ready state, ignoring STARTED/RETRY, and never overwrites SUCCESS', async () => {
    const store = new ResultStore(createMemoryBackend());
    const waiting = store.wait('t2', { timeoutMs: 2000 });
    await store.store(buildResultMeta({ taskId: 't2', status: 'STARTED', result: { pid: 1, hostname: 'h' } }));
    await store.store(buildResultMeta({ taskId: 't2', status: 'SUCCESS', result: 42 }));
    assert.equal((await waiting).result, 42);
    await store.store(buildResultMeta({ taskId: 't2', status: 'FAILURE', result: { exc_type: 'X', exc_message: [], exc_module: null } }));
    assert.equal((await store.get('t2')).status, 'SUCCESS');
  });

  it('takes a result published while its read is in flight, without waiting for the read', async () => {
    const inner = createMemoryBackend();
    let reads = 0;
    let releaseRead!: () => void;
    // A backend whose reads are slow: the read's reply comes only when released.
    const slowReads = Object.assign(Object.create(inner) as typeof inner, {
      get: async (id: string) => {
        reads++;
        await new Promise<void>((r) => (releaseRead = r));
        return inner.get(id);
      },
    });
    const store = new ResultStore(slowReads);
    const waiting = store.wait('t3', { timeoutMs: 2000 });
    while (reads === 0) await new Promise((r) => setImmediate(r));
    await store.store(buildResultMeta({ taskId: 't3', status: 'SUCCESS', result: 'early' }));
    assert.equal((await waiting).result, 'early');
    releaseRead();
    // A read that fails while nothing was published fails the wait (it is not swallowed).
    const failing = new ResultStore(Object.assign(Object.create(inner) as typeof inner, { get: () => Promise.reject(new Error('read failed')) }));
    await assert.rejects(failing.wait('t4', { timeoutMs: 2000 }), /read failed/);
  });

  it('times out with a typed error', async () => {
    const store = new ResultStore(createMemoryBackend());
    await assert.rejects(store.wait('none', { timeoutMs: 50 }), { code: 'ERR_TIMEOUT' });
  });

  it('honours resultAcceptContent', () => {
    const store = new ResultStore(createMemoryBackend(), { accept: new Set(['application/json']) });
    assert.throws(() => store.decode(MSGPACK_SERIALIZER.encode({ status: 'SUCCESS', task_id: 'x' }), 'x'), /resultAcceptContent/);
  });
});

function prefixed<T>(p: string, o: Record<string, T>): Record<string, T> {
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [p + k, v]));
}
