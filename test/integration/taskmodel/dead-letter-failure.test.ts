/**
 * A refused, dead-lettered message gets one FAILURE record (so its caller
 * stops waiting), and only when its id is its own `id` header, results are
 * kept, senders are not authenticated by signatures, and no record exists.
 * The Python caller's view is in test/interop/redis/taskmodel-poison.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { memoryFixture } from '../../helpers/app-fixture.ts';
import { JSON_SERIALIZER } from '../../../src/codec/serializers.ts';
import { buildTaskMessage } from '../../../src/protocol/task-message.ts';
import { buildResultMeta } from '../../../src/protocol/result-meta.ts';
import type { WireMessage } from '../../../src/protocol/types.ts';
import type { StoredRecord } from '../../../src/core/backend.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function message(id: string, change: (m: WireMessage) => WireMessage): WireMessage {
  return change(buildTaskMessage({ task: 'tm.ok', id, args: [1], kwargs: {} }, JSON_SERIALIZER));
}

async function settled(f: ReturnType<typeof memoryFixture>, count: number): Promise<void> {
  const deadline = Date.now() + 5000;
  while ((await f.broker.deadLetters('celery', 100)).length < count) {
    assert.ok(Date.now() < deadline, `${count} dead letters`);
    await sleep(10);
  }
  await sleep(100);
}

describe('dead-lettered messages get one FAILURE record', () => {
  it('undecodable, disallowed and non-task bodies: FAILURE with kombu/Celery exception types, read by AsyncResult', async () => {
    const f = memoryFixture();
    f.app.task('tm.ok', (x: number) => x);
    try {
      await f.startWorker();
      await f.app.publish('celery', message('dl-json', (m) => ({ ...m, body: Buffer.from('[[1], {}, {') })));
      await f.app.publish('celery', message('dl-pickle', (m) => ({ ...m, contentType: 'application/x-python-serialize', contentEncoding: 'binary', body: Buffer.from([0x80, 0x04, 0x4b, 0x01, 0x2e]) })));
      await f.app.publish('celery', message('dl-shape', (m) => ({ ...m, body: Buffer.from('[1, 2]') })));
      await f.app.publish('celery', message('dl-bz2', (m) => ({ ...m, headers: { ...m.headers, compression: 'application/x-bz2' } })));
      const expect: Array<[string, string, string]> = [
        ['dl-json', 'DecodeError', 'kombu.exceptions'],
        ['dl-pickle', 'ContentDisallowed', 'kombu.exceptions'],
        ['dl-shape', 'InvalidTaskError', 'celery.exceptions'],
        ['dl-bz2', 'DecodeError', 'kombu.exceptions'],
      ];
      for (const [id, type, module] of expect) {
        const res = f.app.asyncResult(id);
        await assert.rejects(res.get({ timeoutMs: 5000 }), (err: unknown) => {
          const e = err as { excType: string; excModule: string; excMessage: unknown[] };
          assert.equal(e.excType, type, id);
          assert.equal(e.excModule, module, id);
          assert.match(String(e.excMessage[0]), /^message dead-lettered: /, id);
          return true;
        });
      }
      assert.equal((await f.broker.deadLetters('celery', 100)).length, 4);
    } finally {
      await f.close();
    }
  });

  it('no record without an id header (correlation_id alone is not an id), with ignore_result, or over an existing record', async () => {
    const f = memoryFixture();
    f.app.task('tm.ok', (x: number) => x);
    const stored: StoredRecord[] = [];
    const store = f.backend.store.bind(f.backend);
    f.backend.store = (records, options) => {
      stored.push(...records);
      return store(records, options);
    };
    try {
      await f.app.resultStore().then((s) => s!.store(buildResultMeta({ taskId: 'dl-done', status: 'SUCCESS', result: 7 })));
      stored.length = 0;
      await f.startWorker();
      const bad = (m: WireMessage): WireMessage => ({ ...m, body: Buffer.from('not json') });
      await f.app.publish('celery', message('dl-noid', (m) => { const { id: _drop, ...headers } = m.headers; return bad({ ...m, headers, properties: { ...m.properties, correlation_id: 'dl-noid' } }); }));
      await f.app.publish('celery', message('dl-ignored', (m) => bad({ ...m, headers: { ...m.headers, ignore_result: true } })));
      await f.app.publish('celery', message('dl-done', bad));
      await settled(f, 3);
      assert.deepEqual(stored.map((r) => r.taskId), []);
      assert.equal((await f.app.asyncResult('dl-noid').status()), 'PENDING');
      assert.equal(await f.app.asyncResult('dl-done').get({ timeoutMs: 1000 }), 7);
    } finally {
      await f.close();
    }
  });

  it('never twice: the same poison message dead-lettered again writes nothing more', async () => {
    const f = memoryFixture();
    f.app.task('tm.ok', (x: number) => x);
    const stored: StoredRecord[] = [];
    const store = f.backend.store.bind(f.backend);
    f.backend.store = (records, options) => {
      stored.push(...records);
      return store(records, options);
    };
    try {
      await f.startWorker();
      const poison = message('dl-twice', (m) => ({ ...m, body: Buffer.from('{') }));
      await f.app.publish('celery', poison);
      await settled(f, 1);
      await f.app.publish('celery', poison);
      await settled(f, 2);
      assert.deepEqual(stored.map((r) => `${r.taskId}:${r.state}`), ['dl-twice:FAILURE']);
    } finally {
      await f.close();
    }
  });

  it('where senders must be signed, a refused message writes no record under its unauthenticated id', async () => {
    const f = memoryFixture();
    f.app.task('tm.ok', (x: number) => x);
    // The flag the message-security layer sets when every message must carry a valid signature.
    f.app.security = { ...f.app.security, verifiesSenders: true };
    try {
      await f.startWorker();
      await f.app.publish('celery', message('dl-signed', (m) => ({ ...m, body: Buffer.from('{') })));
      await settled(f, 1);
      assert.equal(await f.app.asyncResult('dl-signed').status(), 'PENDING');
    } finally {
      await f.close();
    }
  });
});
