/**
 * The shared revoked store on every engine that keeps results: two workers
 * (two backend connections) recording different revokes at the same
 * instant both keep theirs; a later expiry wins; expired ids are gone; the
 * record written by earlier versions is still read.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { ResultBackend } from '../../../src/core/backend.ts';
import { resolveSettings } from '../../../src/config/options.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { createMemoryBackend } from '../../../src/transport/memory/backend.ts';
import { engine as redisEngine } from '../../../src/transport/redis/index.ts';
import { engine as sqliteEngine } from '../../../src/transport/sqlite/index.ts';
import { sqliteUrlForPath } from '../../../src/transport/sqlite/open.ts';
import { backendRevokedStore, REVOKED_KEY } from '../../../src/worker/control/revoked.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { requireService } from '../../helpers/services.ts';

const logger = createLogger({ level: 'silent' });
const settings = resolveSettings({});
const dir = mkdtempSync(join(tmpdir(), 'celeriac-revoked-'));
let redis: RedisServer | undefined;
after(async () => {
  await redis?.stop();
  rmSync(dir, { recursive: true, force: true });
});

interface Target {
  name: string;
  ready: () => boolean;
  /** Two backends sharing one store (like two worker processes). */
  pair(): Promise<[ResultBackend, ResultBackend]>;
}

const memory = createMemoryBackend();
const targets: Target[] = [
  { name: 'memory', ready: () => true, pair: async () => [memory, memory] },
  {
    name: 'sqlite',
    ready: () => true,
    pair: async () => {
      const url = sqliteUrlForPath(join(dir, 'results.db'));
      return [sqliteEngine.createBackend!(url, { logger, settings }), sqliteEngine.createBackend!(url, { logger, settings })];
    },
  },
  {
    name: 'redis',
    ready: hasRedisServer,
    pair: async () => {
      redis ??= await startRedisServer();
      return [redisEngine.createBackend!(redis.url(3), { logger, settings }), redisEngine.createBackend!(redis.url(3), { logger, settings })];
    },
  },
];

for (const target of targets) {
  describe(`revoked store on ${target.name}`, () => {
    it('two workers revoking different tasks at the same instant both keep theirs', async (t) => {
      if (!requireService(t, target.ready(), target.name)) return;
      const [a, b] = await target.pair();
      await Promise.all([a.connect(), b.connect()]);
      const sa = backendRevokedStore(a);
      const sb = backendRevokedStore(b);
      for (let round = 0; round < 5; round++) {
        const ids = Array.from({ length: 6 }, (_, i) => `r${round}-${target.name}-${i}`);
        await Promise.all(ids.map((id, i) => (i % 2 === 0 ? sa : sb).add([id], 60)));
        const seen = await sa.load();
        for (const id of ids) assert.ok(seen.has(id), `${id} kept (round ${round})`);
      }
      const loaded = await sb.load();
      assert.ok([...loaded.values()].every((until) => until > Date.now() + 50_000 && until <= Date.now() + 60_000));
      if (a !== b) await Promise.all([a.close(), b.close()]);
    });

    it('a later expiry wins, expired ids are dropped, and the record of earlier versions is still read', async (t) => {
      if (!requireService(t, target.ready(), target.name)) return;
      const [a, b] = await target.pair();
      await Promise.all([a.connect(), b.connect()]);
      const s = backendRevokedStore(a);
      const id = `later-${target.name}`;
      await s.add([id], 1);
      await s.add([id], 100);
      await s.add([id], 10);
      const until = (await s.load()).get(id)!;
      assert.ok(until > Date.now() + 90_000, 'the longest expiry is kept');
      await s.add([`short-${target.name}`], 0.2);
      await new Promise((r) => setTimeout(r, 300));
      assert.ok(!(await s.load()).has(`short-${target.name}`), 'expired');
      // What an earlier Celeriac wrote: one record with every id.
      await a.store([{ taskId: REVOKED_KEY, state: 'REVOKED', payload: Buffer.from(JSON.stringify([[`old-${target.name}`, Date.now() + 60_000]])) }], { expiresSeconds: 60 });
      assert.ok((await backendRevokedStore(b).load()).has(`old-${target.name}`));
      if (a !== b) await Promise.all([a.close(), b.close()]);
    });
  });
}
