/**
 * celeriac beat's leader election, fencing and catch-up, in one process on
 * the memory engine's store (the same rules as Redis and SQLite; those run
 * in test/integration/beat/).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { beatTaskId, createBeat } from '../../../src/beat/beat.ts';
import { interval } from '../../../src/beat/schedule.ts';
import { readBeatStatus } from '../../../src/beat/status.ts';
import type { BeatStore } from '../../../src/core/beat-store.ts';
import { createMemoryBeatStore } from '../../../src/transport/memory/beat-store.ts';

const logger = pino({ level: 'silent' });

interface Sent {
  task: string;
  id: string;
  by: string;
  at: number;
}

function fakeApp(sent: Sent[], by: string) {
  return {
    logger,
    sendTask: async (task: string, _args?: readonly unknown[], _kwargs?: object, options?: { taskId?: string }) => {
      sent.push({ task, id: options!.taskId!, by, at: Date.now() });
      return {} as never;
    },
  };
}

const ns = (): string => `t-${randomBytes(4).toString('hex')}`;
const INTERVAL_S = 0.1;

/** Every tick in [from, to] (ms) of a 100 ms interval. */
function ticksIn(from: number, to: number): number[] {
  const out: number[] = [];
  for (let t = Math.ceil(from / 100) * 100; t <= to; t += 100) out.push(t);
  return out;
}

describe('beat over the memory store', () => {
  it('two instances: each tick sent exactly once, also when the leader stops and the other takes over', async () => {
    const namespace = ns();
    const sent: Sent[] = [];
    const schedule = { every: { task: 'tasks.tick', schedule: INTERVAL_S } };
    const opts = { schedule, namespace, leaseMs: 300, graceMs: 5000, logger } as const;
    const a = createBeat({ ...opts, app: fakeApp(sent, 'a'), store: createMemoryBeatStore(namespace), holder: 'a' });
    await sleep(50);
    const b = createBeat({ ...opts, app: fakeApp(sent, 'b'), store: createMemoryBeatStore(namespace), holder: 'b' });
    const start = Date.now();
    await sleep(1500);
    assert.ok(a.isLeader !== b.isLeader, 'exactly one leader');
    const first = a.isLeader ? a : b;
    const second = first === a ? b : a;
    // A stop without release would only slow the takeover (lease); killing is covered with processes.
    await first.stop();
    await sleep(1500);
    assert.ok(second.isLeader, 'the other instance took over');
    const end = Date.now() - 150;
    await second.stop();
    const ids = sent.map((s) => s.id);
    assert.equal(new Set(ids).size, ids.length, 'no tick sent twice');
    const expected = ticksIn(start + 150, end).map((t) => beatTaskId(namespace, 'every', t));
    const missing = expected.filter((id) => !ids.includes(id));
    assert.deepEqual(missing, [], 'no tick missed');
    assert.ok(sent.some((s) => s.by === 'a') && sent.some((s) => s.by === 'b'), 'both sent while leader');
  });

  it('a leader whose claim arrives after its lease passed on is fenced and sends nothing', async () => {
    const namespace = ns();
    const sent: Sent[] = [];
    const real = createMemoryBeatStore(namespace);
    let paused = false;
    // A leader "paused" between deciding a tick is due and claiming it (GC, SIGSTOP).
    const pausable: BeatStore = {
      ...real,
      acquire: (h, l) => real.acquire(h, l),
      read: () => real.read(),
      release: (h, t) => real.release(h, t),
      claim: async (input) => {
        if (paused) await sleep(800);
        return real.claim(input);
      },
    };
    const opts = { schedule: { every: { task: 'tasks.tick', schedule: INTERVAL_S } }, namespace, leaseMs: 300, graceMs: 5000, logger } as const;
    const a = createBeat({ ...opts, app: fakeApp(sent, 'a'), store: pausable, holder: 'a' });
    await sleep(400);
    assert.ok(a.isLeader);
    const b = createBeat({ ...opts, app: fakeApp(sent, 'b'), store: createMemoryBeatStore(namespace), holder: 'b' });
    paused = true;
    const pausedAt = Date.now();
    await sleep(1200);
    paused = false;
    await sleep(500);
    assert.ok(b.isLeader, 'b took over');
    await Promise.all([a.stop(), b.stop()]);
    const ids = sent.map((s) => s.id);
    assert.equal(new Set(ids).size, ids.length, 'no tick sent twice');
    const bSent = sent.filter((s) => s.by === 'b').length;
    assert.ok(bSent >= 10, `b sent the ticks (${bSent})`);
    assert.deepEqual(sent.filter((s) => s.by === 'a' && s.at > pausedAt), [], 'a sent nothing after its pause: its claims were fenced');
    const status = await readBeatStatus(real, []);
    assert.equal(status.entries[0]!.total, ids.length, 'the store counted every send');
  });

  async function downtime(catchUp: 'skip' | 'runOnce'): Promise<{ sent: Sent[]; skipped: number; missedFrom: number; namespace: string }> {
    const namespace = ns();
    const store = createMemoryBeatStore(namespace);
    // A previous beat ran until 5 s ago.
    const lease = await store.acquire('old', 1000);
    assert.ok(lease.leader);
    const missedFrom = interval(INTERVAL_S).latestAtOrBefore(Date.now() - 5000)!;
    assert.equal((await store.claim({ token: lease.token, entry: 'every', tick: missedFrom, taskId: 'x', skipped: 0 })).state, 'claimed');
    await store.release('old', lease.token);
    const sent: Sent[] = [];
    const b = createBeat({ schedule: { every: { task: 'tasks.tick', schedule: INTERVAL_S, catchUp } }, namespace, leaseMs: 300, graceMs: 1000, logger, app: fakeApp(sent, 'b'), store, holder: 'b' });
    await sleep(600);
    await b.stop();
    const status = await readBeatStatus(store, b.entries);
    return { sent, skipped: status.entries[0]!.skipped, missedFrom, namespace };
  }

  it('catchUp skip: ticks older than the grace period are passed over; recent ones are sent', async () => {
    const { sent, skipped, missedFrom, namespace } = await downtime('skip');
    // (missedFrom, now - grace] is about 4 s of 100 ms ticks: passed over; the last second is sent.
    assert.ok(skipped >= 35 && skipped <= 45, `skipped ${skipped}`);
    assert.ok(sent.length >= 10 && sent.length <= 20, `sent ${sent.length}`);
    assert.ok(!sent.some((s) => s.id === beatTaskId(namespace, 'every', missedFrom + 100)), 'the first missed tick was not sent');
  });

  it('catchUp runOnce: one message stands for the ticks missed beyond the grace period', async () => {
    const { sent, skipped, missedFrom, namespace } = await downtime('runOnce');
    assert.ok(skipped >= 34 && skipped <= 44, `passed over ${skipped}`);
    assert.ok(!sent.some((s) => s.id === beatTaskId(namespace, 'every', missedFrom + 100)), 'the first missed tick was not sent on its own');
    assert.ok(sent.length >= 11 && sent.length <= 21, `sent ${sent.length} (one for the downtime, then the last second)`);
  });

  it('a new leader reports a tick the previous leader claimed but never confirmed as published', async () => {
    const namespace = ns();
    const store = createMemoryBeatStore(namespace);
    const old = await store.acquire('old', 1000);
    assert.ok(old.leader);
    const tick = interval(INTERVAL_S).latestAtOrBefore(Date.now())!;
    await store.claim({ token: old.token, entry: 'every', tick, taskId: 'lost-id', skipped: 0 }); // …and killed before publishing
    await store.release('old', old.token);
    const lines: Array<Record<string, unknown>> = [];
    const capture = pino({ level: 'info' }, { write: (l: string) => void lines.push(JSON.parse(l) as Record<string, unknown>) });
    const b = createBeat({ schedule: { every: { task: 'tasks.tick', schedule: 60 } }, namespace, leaseMs: 300, logger: capture, app: fakeApp([], 'b'), store, holder: 'b' });
    await sleep(100);
    await b.stop();
    const warn = lines.find((l) => String(l.msg).includes('was not confirmed'));
    assert.ok(warn, JSON.stringify(lines.map((l) => l.msg)));
    assert.equal(warn.taskId, 'lost-id');
    const status = await readBeatStatus(store, b.entries);
    assert.equal(status.entries[0]!.lastConfirmed, false);
  });
  it('a claim that cannot carry its message keeps it until the publish is confirmed', async () => {
    const namespace = ns();
    const store = createMemoryBeatStore(namespace);
    let failing = true;
    const published: string[] = [];
    const app = {
      logger,
      sendTask: async () => ({}) as never,
      prepareSend: async (_task: string, _a?: readonly unknown[], _k?: object, o?: { taskId?: string }) => ({
        id: o!.taskId!,
        queue: 'celery',
        outbox: undefined,
        keep: () => `kept:${o!.taskId}`,
        publish: async () => {
          if (failing) throw new Error('broker down');
          published.push(o!.taskId!);
        },
        written: async () => undefined,
        abandon: () => undefined,
      }),
    };
    const b = createBeat({ schedule: { every: { task: 'tasks.tick', schedule: 60 } }, namespace, leaseMs: 300, graceMs: 60_000, logger, app, store, holder: 'b' });
    await sleep(150);
    const first = (await store.read()).entries[0]!;
    assert.deepEqual([first.confirmed, first.pending], [false, `kept:${first.taskId}`], 'kept while the publish is failing');
    failing = false;
    await sleep(700); // the beat retries the publish (200 ms, then 400 ms)
    await b.stop();
    const after = (await store.read()).entries[0]!;
    assert.deepEqual([after.confirmed, after.pending, published], [true, undefined, [after.taskId]], 'published once, confirmed, copy dropped');
  });
});
