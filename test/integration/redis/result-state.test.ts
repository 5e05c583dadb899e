/**
 * The Redis result backend keeps each record's state beside it
 * (`celeriac:task-state:<id>`, same expiry) and leaves `celery-task-meta-<id>`
 * exactly Celery's record. Records written by others carry no companion
 * key: a Python worker's SUCCESS is still kept, and a record deleted without
 * its companion (a Python client's forget) does not block a new write.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import { resolveSettings } from '../../../src/config/options.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { newId } from '../../../src/protocol/ids.ts';
import { createRedisBackend, TASK_META_PREFIX, TASK_STATE_PREFIX, type RedisBackend } from '../../../src/transport/redis/backend.ts';
import { record } from '../../conformance/backend.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { requireService } from '../../helpers/services.ts';

describe('redis result backend: the state beside each record', () => {
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

  it('stores the record as given and its state in the companion key, with the same expiry', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    const id = newId();
    const r = record(id, 'SUCCESS', 42);
    await backend!.store([r], { expiresSeconds: 300 });
    assert.deepEqual(await raw!.getBuffer(TASK_META_PREFIX + id), r.payload);
    assert.equal(await raw!.get(TASK_STATE_PREFIX + id), 'SUCCESS');
    const [a, b] = await Promise.all([raw!.ttl(TASK_META_PREFIX + id), raw!.ttl(TASK_STATE_PREFIX + id)]);
    assert.ok(a > 290 && a <= 300 && b === a, `ttl ${a} / ${b}`);
    await backend!.forget(id);
    assert.equal(await raw!.exists(TASK_META_PREFIX + id, TASK_STATE_PREFIX + id), 0, 'forget deletes both');
  });

  it("keeps a SUCCESS written without a companion key (a Python worker's), as before", async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    for (const spaced of [false, true]) {
      const id = newId();
      // Celery's json: status first, with ", " and ": " separators.
      const py = spaced ? `{"status": "SUCCESS", "result": 1, "traceback": null, "children": [], "date_done": null, "task_id": "${id}"}` : record(id, 'SUCCESS', 1).payload.toString();
      await raw!.set(TASK_META_PREFIX + id, py);
      await backend!.store([record(id, 'FAILURE', 'late')]);
      assert.equal(await raw!.get(TASK_META_PREFIX + id), py);
      assert.equal(await raw!.exists(TASK_STATE_PREFIX + id), 0);
    }
  });

  it('a record deleted without its companion key can be written again', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    const id = newId();
    await backend!.store([record(id, 'SUCCESS', 'old')]);
    await raw!.del(TASK_META_PREFIX + id); // Python's AsyncResult.forget()
    const again = record(id, 'FAILURE', 'new');
    await backend!.store([again]);
    assert.deepEqual(await raw!.getBuffer(TASK_META_PREFIX + id), again.payload);
    assert.equal(await raw!.get(TASK_STATE_PREFIX + id), 'FAILURE');
  });
});
