/**
 * The chord join of every backend that has one (memory, SQLite, Redis):
 * the header size, parts counted once each (a redelivered part is the same
 * entry), the completing part alone gets every part in header order, the
 * join forgotten after. On Redis, the keys are Celery 5.2.6's: a sorted set
 * `celery-taskset-meta-<group>.j` scored by group_index, `.s` written as
 * text with the result expiry, `.t` read as extra parts (Task.add_to_chord; our addToChord increments it).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ResultBackend } from '../../../src/core/backend.ts';
import { resolveSettings } from '../../../src/config/options.ts';
import { newId } from '../../../src/protocol/ids.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { createMemoryBackend } from '../../../src/transport/memory/backend.ts';
import { createRedisBackend } from '../../../src/transport/redis/backend.ts';
import { createSqliteBackend } from '../../../src/transport/sqlite/backend.ts';
import { sqliteUrlForPath } from '../../../src/transport/sqlite/open.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { requireService } from '../../helpers/services.ts';

const part = (n: number) => Buffer.from(JSON.stringify([1, `task-${n}`, 'SUCCESS', n]));
const logger = createLogger({ level: 'silent' } as never);

let server: RedisServer | undefined;
let dir: string | undefined;
const targets: Array<{ name: string; ok: () => boolean; create: () => ResultBackend }> = [
  { name: 'memory', ok: () => true, create: () => createMemoryBackend() },
  { name: 'sqlite', ok: () => true, create: () => createSqliteBackend({ url: sqliteUrlForPath(join(dir!, 'r.db')), logger, settings: resolveSettings({}) }) },
  { name: 'redis', ok: () => hasRedisServer(), create: () => createRedisBackend({ url: server!.url(5), logger, settings: resolveSettings({}) }) },
];

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'celeriac-chord-'));
  if (hasRedisServer()) server = await startRedisServer();
});
after(async () => {
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

for (const target of targets) {
  describe(`chord join: ${target.name}`, () => {
    it('completes once, with every part in header order; a repeated part counts once; nothing is left', async (t) => {
      if (!requireService(t, target.ok(), 'redis-server')) return;
      const a = target.create();
      // Two instances share a store like two processes do (memory: one process, one instance).
      const b = target.name === 'memory' ? a : target.create();
      const gid = newId();
      await a.setChordSize!(gid, 3, { expiresSeconds: 60 });
      assert.equal(await a.chordPartReturn!({ groupId: gid, groupIndex: 2, entry: part(2) }, { expiresSeconds: 60 }), undefined);
      assert.equal(await b.chordPartReturn!({ groupId: gid, groupIndex: 2, entry: part(2) }, { expiresSeconds: 60 }), undefined, 'a redelivered part counts once');
      assert.equal(await b.chordPartReturn!({ groupId: gid, groupIndex: 0, entry: part(0) }, { expiresSeconds: 60 }), undefined);
      const done = await a.chordPartReturn!({ groupId: gid, groupIndex: 1, entry: part(1) }, { expiresSeconds: 60 });
      assert.deepEqual(done?.map(String), [part(0), part(1), part(2)].map(String));
      // The join is gone: a late duplicate starts nothing (no size any more).
      assert.equal(await b.chordPartReturn!({ groupId: gid, groupIndex: 1, entry: part(1) }, { expiresSeconds: 60 }), undefined);
      await a.close();
      if (b !== a) await b.close();
    });

    it('addToChord: the join waits for the added parts too; without a size it adds nothing', async (t) => {
      if (!requireService(t, target.ok(), 'redis-server')) return;
      const a = target.create();
      const b = target.name === 'memory' ? a : target.create();
      const gid = newId();
      await a.setChordSize!(gid, 1, { expiresSeconds: 60 });
      await b.addToChord!(gid, 2, { expiresSeconds: 60 });
      assert.equal(await a.chordPartReturn!({ groupId: gid, groupIndex: 0, entry: part(0) }, { expiresSeconds: 60 }), undefined);
      assert.equal(await b.chordPartReturn!({ groupId: gid, groupIndex: 0, entry: part(1) }, { expiresSeconds: 60 }), undefined);
      const done = await a.chordPartReturn!({ groupId: gid, groupIndex: 0, entry: part(2) }, { expiresSeconds: 60 });
      assert.deepEqual(done?.map(String), [part(0), part(1), part(2)].map(String));
      await a.close();
      if (b !== a) await b.close();
    });

    it('without a size (a group that is not a chord header) nothing completes', async (t) => {
      if (!requireService(t, target.ok(), 'redis-server')) return;
      const a = target.create();
      const gid = newId();
      assert.equal(await a.chordPartReturn!({ groupId: gid, groupIndex: null, entry: part(0) }), undefined);
      await a.close();
    });

    it('saved groups round-trip', async (t) => {
      if (!requireService(t, target.ok(), 'redis-server')) return;
      const a = target.create();
      const gid = newId();
      await a.saveGroup!(gid, Buffer.from('{"result": 1}'), { expiresSeconds: 60 });
      assert.equal(String(await a.getGroup!(gid)), '{"result": 1}');
      await a.forgetGroup!(gid);
      assert.equal(await a.getGroup!(gid), undefined);
      await a.close();
    });
  });
}

describe('chord join: the Redis keys are Celery 5.2.6 keys', () => {
  it('.s as text with the expiry; .j a sorted set scored by group_index, with expiry; .t counted', async (t) => {
    if (!requireService(t, hasRedisServer(), 'redis-server')) return;
    const be = createRedisBackend({ url: server!.url(6), logger, settings: resolveSettings({}) });
    const raw = server!.client(6);
    const gid = newId();
    const key = `celery-taskset-meta-${gid}`;
    await be.setChordSize(gid, 2, { expiresSeconds: 120 });
    assert.equal(await raw.get(`${key}.s`), '2');
    assert.ok((await raw.ttl(`${key}.s`)) > 100);
    // Celery's Task.add_to_chord: INCR .t adds one more part to wait for; ours is the same key.
    await raw.incr(`${key}.t`);
    assert.equal(await raw.get(`${key}.t`), '1');
    await be.addToChord(gid, 1, { expiresSeconds: 120 });
    assert.equal(await raw.get(`${key}.t`), '2', 'a Celeriac addToChord and a Python one count on the same key');
    assert.ok((await raw.ttl(`${key}.t`)) > 100);
    await be.chordPartReturn({ groupId: gid, groupIndex: 2, entry: part(2) }, { expiresSeconds: 120 });
    await be.chordPartReturn({ groupId: gid, groupIndex: 1, entry: part(1) }, { expiresSeconds: 120 });
    assert.deepEqual(await raw.call('ZRANGE', `${key}.j`, '0', '-1', 'WITHSCORES'), [String(part(1)), '1', String(part(2)), '2']);
    assert.ok((await raw.ttl(`${key}.j`)) > 100);
    assert.equal(await be.chordPartReturn({ groupId: gid, groupIndex: null, entry: part(9) }, { expiresSeconds: 120 }), undefined, '.t asks for two more parts');
    assert.deepEqual(await raw.zscore(`${key}.j`, String(part(9))), 'inf');
    const done = await be.chordPartReturn({ groupId: gid, groupIndex: 0, entry: part(0) }, { expiresSeconds: 120 });
    assert.deepEqual(done?.map(String), [part(0), part(1), part(2), part(9)].map(String));
    assert.deepEqual(await raw.keys(`${key}*`), []);
    raw.disconnect();
    await be.close();
  });
});
