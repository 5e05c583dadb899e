/**
 * Beat's outbox: where the beat store and the broker share a server or
 * file (Redis, SQLite, PostgreSQL), a tick's claim writes its task message in the same
 * atomic step, so a leader that dies between "claimed" and "published"
 * cannot lose the tick, and a refused claim writes nothing.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { Redis } from 'ioredis';
import { openBeatStore } from '../../../src/client/beat-store.ts';
import { createApp, type App } from '../../../src/index.ts';
import { beatTaskId, createBeat } from '../../../src/beat/beat.ts';
import type { BeatStore } from '../../../src/core/beat-store.ts';
import { requireService } from '../../helpers/services.ts';
import { redisAnswers } from '../../helpers/redis-server.ts';
import { dropPgSchema, hasPostgres, pgAdmin, pgSchemaUrl } from '../../helpers/postgres.ts';

const logger = pino({ level: 'silent' });
const REDIS_URL = 'redis://127.0.0.1:6379/11';
const env = { CELERIAC_ENV: 'development' };

const redisUp = (): Promise<boolean> => redisAnswers(REDIS_URL);

/** Task ids waiting in `queue`, read without taking them (Redis list, SQLite or PostgreSQL rows). */
async function waitingIds(app: App, queue: string, engine: string): Promise<string[]> {
  if (engine === 'redis') {
    const r = new Redis(REDIS_URL);
    try {
      const prefix = String(app.settings.brokerTransportOptions.globalKeyprefix ?? '');
      const items = await r.lrange(`${prefix}${queue}`, 0, -1);
      return items.map((i) => String((JSON.parse(i) as { headers: { id: string } }).headers.id)).reverse();
    } finally {
      r.disconnect();
    }
  }
  if (engine === 'postgres') {
    const schema = new URL(app.settings.brokerUrl!).searchParams.get('schema')!;
    const rows = await pgAdmin<{ id: string }>(`SELECT headers::json->>'id' AS id FROM "${schema}".messages WHERE queue = $1 ORDER BY seq`, [queue]);
    return rows.rows.map((r) => r.id);
  }
  const { default: Database } = await import('better-sqlite3');
  const db = new Database(decodeURIComponent(app.settings.brokerUrl!.slice('sqlite://'.length)), { readonly: true });
  try {
    return (db.prepare("SELECT json_extract(headers, '$.id') AS id FROM messages WHERE queue = ? ORDER BY seq").all(queue) as Array<{ id: string }>).map((r) => r.id);
  } finally {
    db.close();
  }
}

describe('beat outbox: the claim carries the message', () => {
  const dir = mkdtempSync(join(tmpdir(), 'celeriac-beat-outbox-'));
  const pgSchemas: string[] = [];
  const pgUrl = (): string => {
    const { url, schema } = pgSchemaUrl('beat_outbox');
    pgSchemas.push(schema);
    return url;
  };
  after(async () => {
    rmSync(dir, { recursive: true, force: true });
    for (const schema of pgSchemas) await dropPgSchema(schema);
  });

  const engines: Array<[string, () => string, () => Promise<boolean>]> = [
    ['sqlite', () => `sqlite://${join(dir, `${randomBytes(4).toString('hex')}.db`)}`, async () => true],
    ['redis', () => REDIS_URL, redisUp],
    ['postgres', pgUrl, hasPostgres],
  ];

  async function setup(t: TestContext, engine: string, url: string): Promise<{ app: App; store: BeatStore; queue: string; namespace: string }> {
    const prefix = `outbox-${randomBytes(4).toString('hex')}:`;
    const app = createApp({ brokerUrl: url, env, logger, ...(engine === 'redis' ? { brokerTransportOptions: { globalKeyprefix: prefix } } : {}) });
    const namespace = `ns-${randomBytes(4).toString('hex')}`;
    const { store } = await openBeatStore(app, { namespace });
    const queue = `q-${randomBytes(3).toString('hex')}`;
    t.after(async () => {
      if (engine === 'redis') {
        const r = new Redis(REDIS_URL);
        const keys = [...(await r.keys(`${prefix}*`)), ...(await r.keys(`celeriac:beat:{${namespace}}:*`))];
        if (keys.length > 0) await r.del(...keys);
        r.disconnect();
      }
      await store.close();
      await app.close();
    });
    return { app, store, queue, namespace };
  }

  for (const [engine, url, available] of engines) {
    it(`${engine}: a claim writes the message with the record; a fenced or repeated claim writes nothing`, async (t) => {
      if (!requireService(t, await available(), engine)) return;
      const { app, store, queue } = await setup(t, engine, url());
      const lease = await store.acquire('a', 5000);
      assert.ok(lease.leader);

      const p1 = await app.prepareSend('tasks.tick', [1], {}, { taskId: 'tick-1', queue });
      assert.ok(p1.outbox, 'the broker hands the publish over');
      assert.equal(store.canCarry?.(p1.outbox), true, 'the store on the broker can carry it');
      assert.deepEqual(await waitingIds(app, queue, engine), [], 'nothing is sent by preparing');
      assert.deepEqual(await store.claim({ token: lease.token, entry: 'e', tick: 1000, taskId: 'tick-1', skipped: 0, publish: p1.outbox }), { state: 'claimed', published: true });
      await p1.written();
      assert.deepEqual(await waitingIds(app, queue, engine), ['tick-1'], 'the message is in its queue once the claim returns');
      const e = (await store.read()).entries[0]!;
      assert.deepEqual([e.lastTick, e.taskId, e.confirmed], [1000, 'tick-1', true], 'a carried claim is confirmed in the same step');

      const again = await app.prepareSend('tasks.tick', [1], {}, { taskId: 'tick-1', queue });
      assert.deepEqual(await store.claim({ token: lease.token, entry: 'e', tick: 1000, taskId: 'tick-1', skipped: 0, publish: again.outbox! }), { state: 'done', lastTick: 1000 });
      const fenced = await app.prepareSend('tasks.tick', [2], {}, { taskId: 'tick-2', queue });
      assert.deepEqual(await store.claim({ token: lease.token + 7, entry: 'e', tick: 2000, taskId: 'tick-2', skipped: 0, publish: fenced.outbox! }), { state: 'fenced' });
      assert.deepEqual(await waitingIds(app, queue, engine), ['tick-1'], 'refused claims pushed nothing');

      // The message is the one sendTask would have sent: a worker reads it like any other.
      const [delivered] = await new Promise<string[]>((resolve, reject) => {
        void app.broker().then(async (b) => {
          const c = await b.consume([queue], { prefetch: 1 }, (d) => {
            void d.ack().then(() => c.cancel()).then(() => resolve([String(d.message.headers.id), String(d.message.headers.task)]), reject);
          });
        }, reject);
      });
      assert.equal(delivered, 'tick-1');
    });

    it(`${engine}: an idle consumer wakes for a carried tick at once`, async (t) => {
      if (!requireService(t, await available(), engine)) return;
      const { app, store, queue } = await setup(t, engine, url());
      const lease = await store.acquire('a', 5000);
      assert.ok(lease.leader);
      const broker = await app.broker();
      let arrived: (at: number) => void;
      const got = new Promise<number>((r) => (arrived = r));
      const c = await broker.consume([queue], { prefetch: 1 }, (d) => {
        arrived(performance.now());
        void d.ack();
      });
      t.after(() => c.cancel());
      await sleep(300); // idle: waiting on its wake-up, not polling yet
      const p = await app.prepareSend('tasks.tick', [], {}, { taskId: 'wake-1', queue });
      const start = performance.now();
      assert.deepEqual(await store.claim({ token: lease.token, entry: 'w', tick: 1, taskId: 'wake-1', skipped: 0, publish: p.outbox! }), { state: 'claimed', published: true });
      await p.written();
      const ms = (await Promise.race([got, sleep(4000).then(() => Infinity)])) - start;
      assert.ok(ms < 1500, `delivered ${Math.round(ms)} ms after the claim (the safety poll is 5 s)`);
    });

    it(`${engine}: a store elsewhere cannot carry the broker's publish`, async (t) => {
      if (!requireService(t, await available(), engine)) return;
      const { app, queue } = await setup(t, engine, url());
      const other = engine === 'redis' ? 'redis://127.0.0.1:6379/12' : engine === 'postgres' ? pgUrl() : `sqlite://${join(dir, 'other.db')}`;
      const { store } = await openBeatStore(app, { stateUrl: other, namespace: `ns-${randomBytes(4).toString('hex')}` });
      t.after(() => store.close());
      const p = await app.prepareSend('tasks.tick', [], {}, { queue });
      assert.ok(p.outbox);
      assert.equal(store.canCarry?.(p.outbox), false);
      p.abandon();
    });

    it(`${engine}: with the state elsewhere, a claim keeps the message and a new leader sends it again`, async (t) => {
      if (!requireService(t, await available(), engine)) return;
      const { app, queue, namespace } = await setup(t, engine, url());
      const other = engine === 'redis' ? 'redis://127.0.0.1:6379/12' : engine === 'postgres' ? pgUrl() : `sqlite://${join(dir, `${randomBytes(4).toString('hex')}.db`)}`;
      const { store } = await openBeatStore(app, { stateUrl: other, namespace });
      t.after(async () => {
        if (engine === 'redis') {
          const r = new Redis('redis://127.0.0.1:6379/12');
          await r.del(`celeriac:beat:{${namespace}}:lock`, `celeriac:beat:{${namespace}}:fence`, `celeriac:beat:{${namespace}}:entries`);
          r.disconnect();
        }
        await store.close();
      });
      // The old leader claims the tick, keeping its message, and dies before the publish.
      const schedule = { e: { task: 'tasks.tick', schedule: 3600, options: { queue } } };
      const old = await store.acquire('old', 300);
      assert.ok(old.leader);
      const tick = Date.now() - 100; // recent: within the new leader's grace period
      const taskId = beatTaskId(namespace, 'e', tick);
      const p = await app.prepareSend('tasks.tick', [], {}, { queue, taskId });
      const kept = p.keep();
      assert.deepEqual(await store.claim({ token: old.token, entry: 'e', tick, taskId, skipped: 0, pending: kept }), { state: 'claimed', published: false });
      p.abandon();
      const before = (await store.read()).entries[0]!;
      assert.deepEqual([before.confirmed, before.pending], [false, kept], 'the message is kept with the unconfirmed claim');
      assert.deepEqual(await waitingIds(app, queue, engine), [], 'nothing was sent');
      await sleep(400); // the old lease lapses
      const beat = createBeat({ app, store, namespace, schedule, leaseMs: 2000, logger });
      await sleep(800);
      await beat.stop();
      assert.deepEqual(await waitingIds(app, queue, engine), [taskId], 'the new leader sent the kept message, once');
      const after = (await store.read()).entries[0]!;
      assert.deepEqual([after.lastTick, after.confirmed, after.pending], [tick, true, undefined], 'confirmed, and the copy dropped');
      // The copy sent is the one the old leader built and signed (its nonce too): a worker's replay guard refuses a second copy.
      const [delivered] = await new Promise<Array<Record<string, unknown>>>((resolve, reject) => {
        void app.broker().then(async (b) => {
          const c = await b.consume([queue], { prefetch: 1 }, (d) => {
            void d.ack().then(() => c.cancel()).then(() => resolve([d.message.headers]), reject);
          });
        }, reject);
      });
      assert.deepEqual(delivered, (JSON.parse(kept) as { headers: Record<string, unknown> }).headers);
    });

    it(`${engine}: beat's ticks arrive although every publish of its own fails (the leader "dies" after each claim)`, async (t) => {
      if (!requireService(t, await available(), engine)) return;
      const { app, store, queue, namespace } = await setup(t, engine, url());
      // An app whose own publishes never happen: what arrives came through the claims.
      const dying = {
        logger,
        sendTask: async () => {
          throw new Error('killed before the publish');
        },
        prepareSend: async (...a: Parameters<App['prepareSend']>) => {
          const p = await app.prepareSend(...a);
          return {
            ...p,
            outbox: p.outbox,
            written: () => p.written(),
            abandon: (r?: unknown) => p.abandon(r),
            publish: async () => {
              throw new Error('killed before the publish');
            },
          };
        },
      };
      const beat = createBeat({ app: dying, store, namespace, schedule: { e: { task: 'tasks.tick', schedule: 0.1, options: { queue } } }, leaseMs: 2000, logger });
      await sleep(1200);
      await beat.stop();
      const ids = await waitingIds(app, queue, engine);
      const state = (await store.read()).entries[0]!;
      assert.ok(ids.length >= 5, `ticks arrived (${ids.length})`);
      assert.equal(ids.length, state.total, 'every claimed tick is in the queue');
      assert.equal(new Set(ids).size, ids.length, 'none twice');
      assert.equal(ids.at(-1), beatTaskId(namespace, 'e', state.lastTick));
      assert.equal(state.confirmed, true);
    });
  }
});
