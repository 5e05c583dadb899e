/**
 * The Redis result store keeps a stored SUCCESS by the record's own `status`
 * field, whatever the record's layout: Celery's JSON (status first, compact
 * or spaced), JSON with the fields in another order, msgpack, and Celeriac's
 * sealed records (status in clear beside the ciphertext). The record key
 * holds exactly the record, nothing is kept beside it, and a record that
 * cannot be read (not a result) does not block a write.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import { pack } from 'msgpackr';
import { resolveSettings } from '../../../src/config/options.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { newId } from '../../../src/protocol/ids.ts';
import { createRedisBackend, TASK_META_PREFIX, type RedisBackend } from '../../../src/transport/redis/backend.ts';
import { record } from '../../conformance/backend.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { requireService } from '../../helpers/services.ts';

describe('redis result backend: a stored SUCCESS is kept, read from its status field', () => {
  const ok = hasRedisServer();
  let server: RedisServer | undefined;
  let backend: RedisBackend | undefined;
  let raw: Redis | undefined;

  before(async () => {
    if (!ok) return;
    server = await startRedisServer();
    backend = createRedisBackend({ url: server.url(3), logger: createLogger({ level: 'silent' }), settings: resolveSettings({}) });
    await backend.connect();
    raw = server.client(3);
  });
  after(async () => {
    await backend?.close();
    raw?.disconnect();
    await server?.stop();
  });

  it('stores the record as given, with its expiry, and nothing beside it', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    const id = newId();
    const r = record(id, 'SUCCESS', 42);
    await backend!.store([r], { expiresSeconds: 300 });
    assert.deepEqual(await raw!.getBuffer(TASK_META_PREFIX + id), r.payload);
    const ttl = await raw!.ttl(TASK_META_PREFIX + id);
    assert.ok(ttl > 290 && ttl <= 300, `ttl ${ttl}`);
    assert.deepEqual((await raw!.keys(`*${id}*`)).sort(), [TASK_META_PREFIX + id]);
    await backend!.forget(id);
    assert.equal(await raw!.exists(TASK_META_PREFIX + id), 0);
  });

  it('keeps a SUCCESS written by others in any layout against a late FAILURE', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    const layouts: Array<(id: string) => string | Buffer> = [
      // Celery's json: status first, with ", " and ": " separators.
      (id) => `{"status": "SUCCESS", "result": 1, "traceback": null, "children": [], "date_done": null, "task_id": "${id}"}`,
      (id) => record(id, 'SUCCESS', 1).payload.toString(),
      // Fields in another order (a store that re-formats JSON; a sealed record's layout).
      (id) => JSON.stringify({ celeriac_encrypted: { v: 1, ct: 'AAAA' }, status: 'SUCCESS', result: null, task_id: id }),
      (id) => JSON.stringify({ task_id: id, result: { status: 'FAILURE' }, status: 'SUCCESS' }),
      // msgpack (Celery's result_serializer='msgpack').
      (id) => pack({ status: 'SUCCESS', result: 1, traceback: null, children: [], date_done: null, task_id: id }),
    ];
    for (const [i, layout] of layouts.entries()) {
      const id = newId();
      const stored = layout(id);
      await raw!.set(TASK_META_PREFIX + id, stored);
      await backend!.store([record(id, 'FAILURE', 'late')]);
      assert.deepEqual(await raw!.getBuffer(TASK_META_PREFIX + id), Buffer.from(stored), `layout ${i}`);
    }
  });

  it('replaces records that are not a SUCCESS, or cannot be read', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    const olds: Array<(id: string) => string | Buffer> = [
      (id) => record(id, 'STARTED', null).payload.toString(),
      // A result value that mentions SUCCESS does not make the record one.
      (id) => JSON.stringify({ task_id: id, result: { status: 'SUCCESS' }, status: 'RETRY' }),
      () => 'this is not a record {',
      () => Buffer.from([0xc1, 0xff, 0x00]),
    ];
    for (const [i, old] of olds.entries()) {
      const id = newId();
      await raw!.set(TASK_META_PREFIX + id, old(id));
      const next = record(id, 'SUCCESS', 'new');
      await backend!.store([next]);
      assert.deepEqual(await raw!.getBuffer(TASK_META_PREFIX + id), next.payload, `old ${i}`);
    }
  });
});
