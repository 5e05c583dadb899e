/**
 * The BeatStore contract on every engine that has one (memory, SQLite,
 * Redis, PostgreSQL): the lease, the fencing token that only grows, and the claim that
 * checks the token and records the tick in one step.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { Redis } from 'ioredis';
import { resolveSettings } from '../../../src/config/options.ts';
import type { BeatStore } from '../../../src/core/beat-store.ts';
import { createBeatStore } from '../../../src/transport/index.ts';
import { openBeatStore } from '../../../src/client/beat-store.ts';
import { createApp } from '../../../src/index.ts';
import { ConfigError } from '../../../src/errors.ts';
import { requireService } from '../../helpers/services.ts';
import { redisAnswers } from '../../helpers/redis-server.ts';
import { dropPgSchema, hasPostgres, pgSchemaUrl } from '../../helpers/postgres.ts';
import { beatTaskId, createBeat } from '../../../src/beat/beat.ts';
import { interval } from '../../../src/beat/schedule.ts';

const logger = pino({ level: 'silent' });
const REDIS_URL = 'redis://127.0.0.1:6379/11';

const redisUp = (): Promise<boolean> => redisAnswers(REDIS_URL);

describe('beat store contract', () => {
  const dir = mkdtempSync(join(tmpdir(), 'celeriac-beat-store-'));
  // A schema per PostgreSQL test (the first open makes its tables), dropped at the end.
  const pgSchemas: string[] = [];
  const pgUrl = (): string => {
    const { url, schema } = pgSchemaUrl('beat_store');
    pgSchemas.push(schema);
    return url;
  };
  after(async () => {
    rmSync(dir, { recursive: true, force: true });
    for (const schema of pgSchemas) await dropPgSchema(schema);
  });

  const engines: Array<[string, () => string, () => Promise<boolean>]> = [
    ['memory', () => 'memory://', async () => true],
    ['sqlite', () => `sqlite://${join(dir, `${randomBytes(4).toString('hex')}.db`)}`, async () => true],
    ['redis', () => REDIS_URL, redisUp],
    ['postgres', pgUrl, hasPostgres],
  ];

  for (const [name, url, available] of engines) {
    it(`${name}: one lease holder, growing fencing tokens, fenced and ordered claims`, async (t) => {
      if (!requireService(t, await available(), name)) return;
      const namespace = `contract-${randomBytes(4).toString('hex')}`;
      const u = url();
      const open = async (): Promise<BeatStore> =>
        (await createBeatStore({ url: u, side: 'broker', keyPrefix: '', namespace, settings: resolveSettings({}), logger }))!;
      const sa = await open();
      const sb = await open();
      t.after(async () => {
        if (name === 'redis') {
          const r = new Redis(REDIS_URL);
          await r.del(`celeriac:beat:{${namespace}}:lock`, `celeriac:beat:{${namespace}}:fence`, `celeriac:beat:{${namespace}}:entries`);
          r.disconnect();
        }
        await sa.close();
        await sb.close();
      });
      const a1 = await sa.acquire('a', 300);
      assert.ok(a1.leader);
      const b1 = await sb.acquire('b', 300);
      assert.deepEqual([b1.leader, !b1.leader && b1.holder], [false, 'a'], 'b stands by while a holds the lease');
      const a2 = await sa.acquire('a', 300);
      assert.ok(a2.leader && a2.token === a1.token, 'renewal keeps the token');

      assert.deepEqual(await sa.claim({ token: a1.token, entry: 'e', tick: 1000, taskId: 't1', skipped: 0 }), { state: 'claimed', published: false });
      assert.deepEqual(await sb.claim({ token: a1.token, entry: 'e', tick: 1000, taskId: 't1', skipped: 0 }), { state: 'done', lastTick: 1000 }, 'a tick is claimed once');
      assert.deepEqual(await sa.claim({ token: a1.token, entry: 'e', tick: 900, taskId: 't0', skipped: 0 }), { state: 'done', lastTick: 1000 }, 'an older tick is refused');
      assert.deepEqual(await sb.claim({ token: a1.token + 1, entry: 'e', tick: 1100, taskId: 'x', skipped: 0 }), { state: 'fenced' }, 'a token that holds no lease is refused');

      // a is "paused" past its lease; b takes over with a larger token.
      await sleep(450);
      const b2 = await sb.acquire('b', 5000);
      assert.ok(b2.leader && b2.token > a1.token, 'a new holder gets a larger token');
      assert.deepEqual(await sa.claim({ token: a1.token, entry: 'e', tick: 2000, taskId: 'late', skipped: 0 }), { state: 'fenced' }, "the old leader's claim of a new tick is fenced");
      const a3 = await sa.acquire('a', 300);
      assert.equal(a3.leader, false, 'the old leader cannot take a live lease back');
      assert.deepEqual(await sb.claim({ token: b2.token, entry: 'e', tick: 2000, taskId: 't2', skipped: 4 }), { state: 'claimed', published: false });

      const state = await sa.read();
      assert.equal(state.lease?.holder, 'b');
      assert.equal(state.lease?.token, b2.token);
      assert.equal(state.entries.length, 1);
      const e = state.entries[0]!;
      assert.deepEqual([e.name, e.lastTick, e.taskId, e.token, e.total, e.skipped], ['e', 2000, 't2', b2.token, 2, 4]);
      assert.ok(Math.abs(e.sentAt - Date.now()) < 5000);
      assert.equal(e.confirmed, false, 'a claim starts unconfirmed');
      assert.equal(e.pending, undefined, 'nothing kept when the claim kept nothing');
      await sb.confirm('e', 1000);
      assert.equal((await sa.read()).entries[0]!.confirmed, false, 'confirming an older tick changes nothing');
      await sb.confirm('e', 2000);
      assert.equal((await sa.read()).entries[0]!.confirmed, true, 'the publish of the last tick is confirmed');
      // A claim that keeps its message: read back until confirmed, then dropped.
      assert.deepEqual(await sb.claim({ token: b2.token, entry: 'k', tick: 3000, taskId: 't3', skipped: 0, pending: '{"kept":1}' }), { state: 'claimed', published: false });
      assert.equal((await sa.read()).entries.find((x) => x.name === 'k')?.pending, '{"kept":1}');
      await sb.confirm('k', 3000);
      const k = (await sa.read()).entries.find((x) => x.name === 'k')!;
      assert.deepEqual([k.confirmed, k.pending], [true, undefined]);

      await sb.release('b', b2.token + 1);
      assert.equal((await sa.read()).lease?.holder, 'b', 'a release with another token is ignored');
      await sb.release('b', b2.token);
      assert.equal((await sa.read()).lease, undefined, 'released');
      const a4 = await sa.acquire('a', 300);
      assert.ok(a4.leader && a4.token > b2.token, 'the token keeps growing across a release');
    });
  }

  for (const [name, url, available] of engines.filter(([n]) => n !== 'memory')) {
    it(`${name}: racing stores elect one leader, and a tick raced by two stores is claimed once`, async (t) => {
      if (!requireService(t, await available(), name)) return;
      const namespace = `race-${randomBytes(4).toString('hex')}`;
      const u = url();
      const stores = await Promise.all(
        Array.from({ length: 4 }, async () => (await createBeatStore({ url: u, side: 'broker', keyPrefix: '', namespace, settings: resolveSettings({}), logger }))!),
      );
      t.after(async () => {
        if (name === 'redis') {
          const r = new Redis(REDIS_URL);
          await r.del(`celeriac:beat:{${namespace}}:lock`, `celeriac:beat:{${namespace}}:fence`, `celeriac:beat:{${namespace}}:entries`);
          r.disconnect();
        }
        for (const s of stores) await s.close();
      });
      const acquired = await Promise.all(stores.map((s, i) => s.acquire(`h${i}`, 5000)));
      const leaders = acquired.filter((a) => a.leader);
      assert.equal(leaders.length, 1, 'one leader');
      const token = (leaders[0] as { token: number }).token;
      // Every store claims the same 20 ticks at once, as a paused leader and its successor could.
      const outcomes = await Promise.all(
        Array.from({ length: 20 }, (_, k) => stores.map((s) => s.claim({ token, entry: 'e', tick: 1000 * (k + 1), taskId: `t${k}`, skipped: 0 }))).flat(),
      );
      const claimed = outcomes.filter((o) => o.state === 'claimed').length;
      const e = (await stores[0]!.read()).entries[0]!;
      assert.equal(e.total, claimed, 'every claim counted: no lost update');
      assert.ok(claimed >= 1 && claimed <= 20, `each tick at most once (${claimed})`);
      assert.equal(e.lastTick, 20_000);
    });
  }

  for (const [name, url, available] of engines.filter(([n]) => n !== 'memory')) {
    for (const catchUp of ['skip', 'runOnce'] as const) {
      it(`${name}: catchUp ${catchUp} after 5 s of downtime (100 ms interval, 1 s grace)`, async (t) => {
        if (!requireService(t, await available(), name)) return;
        const namespace = `catchup-${randomBytes(4).toString('hex')}`;
        const store = (await createBeatStore({ url: url(), side: 'broker', keyPrefix: '', namespace, settings: resolveSettings({}), logger }))!;
        t.after(async () => {
          if (name === 'redis') {
            const r = new Redis(REDIS_URL);
            await r.del(`celeriac:beat:{${namespace}}:lock`, `celeriac:beat:{${namespace}}:fence`, `celeriac:beat:{${namespace}}:entries`);
            r.disconnect();
          }
          await store.close();
        });
        // A previous beat sent its last tick 5 s ago, then everything stopped.
        const old = await store.acquire('old', 1000);
        assert.ok(old.leader);
        const lastSent = interval(0.1).latestAtOrBefore(Date.now() - 5000)!;
        assert.equal((await store.claim({ token: old.token, entry: 'e', tick: lastSent, taskId: 'x', skipped: 0 })).state, 'claimed');
        await store.release('old', old.token);
        const sent: string[] = [];
        const app = { logger, sendTask: async (_n: string, _a?: readonly unknown[], _k?: object, o?: { taskId?: string }) => (sent.push(o!.taskId!), {} as never) };
        const beat = createBeat({ app, store, namespace, schedule: { e: { task: 't', schedule: 0.1, catchUp } }, leaseMs: 500, graceMs: 1000, logger });
        await sleep(700);
        await beat.stop();
        const e = (await store.read()).entries[0]!;
        const missedOld = 40; // about 4 s of ticks older than the 1 s grace
        assert.ok(!sent.includes(beatTaskId(namespace, 'e', lastSent + 100)), 'the first missed tick is not sent on its own');
        if (catchUp === 'skip') {
          assert.ok(Math.abs(e.skipped - missedOld) <= 6, `passed over ${e.skipped}`);
          assert.ok(sent.length >= 10 && sent.length <= 20, `sent the last second's ticks only (${sent.length})`);
        } else {
          assert.ok(Math.abs(e.skipped - (missedOld - 1)) <= 6, `one message stood for ${e.skipped + 1}`);
          assert.ok(sent.length >= 11 && sent.length <= 21, `one for the downtime, then the last second's (${sent.length})`);
        }
        assert.equal(e.total, sent.length + 1);
      });
    }
  }

  it('RabbitMQ has no beat store: the registry answers undefined', async () => {
    const s = await createBeatStore({ url: 'amqp://guest:guest@127.0.0.1:5672//', side: 'broker', keyPrefix: '', namespace: 'x', settings: resolveSettings({}), logger });
    assert.equal(s, undefined);
  });

  it('with a RabbitMQ broker, beat keeps its state on the result backend, or refuses saying what to set', async (t) => {
    const env = { CELERIAC_ENV: 'development' };
    const bare = createApp({ brokerUrl: 'amqp://guest:guest@127.0.0.1:5672//', env, logger });
    await assert.rejects(openBeatStore(bare), (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.match(e.message, /needs a lock to elect one leader.*RabbitMQ keeps no lock/);
      assert.match(e.hint ?? '', /result backend .*--state-url/);
      assert.doesNotMatch(e.message, /guest:guest/, 'the URL is redacted');
      return true;
    });
    await bare.close();
    if (!requireService(t, await redisUp(), 'redis')) return;
    const withBackend = createApp({ brokerUrl: 'amqp://guest:guest@127.0.0.1:5672//', resultBackend: REDIS_URL, env, logger });
    const { store, where } = await openBeatStore(withBackend, { namespace: `rb-${randomBytes(3).toString('hex')}` });
    assert.equal(store.kind, 'redis');
    assert.match(where, /Redis at .* \(the result backend\)/);
    await store.close();
    await withBackend.close();
  });
});
