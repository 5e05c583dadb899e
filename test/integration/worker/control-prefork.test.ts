/**
 * Remote control of a prefork worker on Redis: the supervisor answers for
 * the node and forwards to its children the commands that read or change
 * their state (reserved, scheduled, active; rate_limit, time_limit,
 * pool_grow/pool_shrink, add_consumer/cancel_consumer,
 * enable_events/disable_events), and a replacement child keeps what was set.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { Broker } from '../../../src/core/broker.ts';
import { createEventReceiver } from '../../../src/client/events/receiver.ts';
import { createWorker, type WorkerHandle } from '../../../src/worker/worker.ts';
import { ask } from '../../helpers/control-client.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { requireService, sleep, waitFor } from '../../helpers/services.ts';

const MODULE = new URL('./apps/control-tasks.ts', import.meta.url).href;
const ok = hasRedisServer();
const node = `pf-${randomUUID().slice(0, 8)}@ctl`;
const queue = `ctl-pf-${randomUUID().slice(0, 8)}`;

type Reply = Record<string, unknown>;

describe('remote control of a prefork worker: commands forwarded to its children', () => {
  let redis: RedisServer | undefined;
  let worker: WorkerHandle | undefined;
  let mod: typeof import('./apps/control-tasks.ts');
  let broker: Broker;
  /** One command to this node; its reply. */
  const one = async (method: string, args: Record<string, unknown> = {}): Promise<unknown> => {
    const replies = await ask(broker, method, args, { destination: [node], limit: 1, timeoutMs: 3000 });
    assert.equal(replies.length, 1, `one reply to ${method}`);
    return (replies[0] as Reply)[node];
  };
  const stats = async () => (await one('stats')) as { pool: { 'max-concurrency': number; processes: number[] }; prefetch_count: number };

  before(async () => {
    if (!ok) return;
    redis = await startRedisServer();
    process.env.CELERIAC_BROKER_URL = redis.url(0);
    process.env.CELERIAC_RESULT_BACKEND = redis.url(1);
    process.env.CELERIAC_LOG_LEVEL = 'error';
    mod = await import('./apps/control-tasks.ts');
    broker = await mod.app.broker();
    worker = createWorker({ app: mod.app, appModule: MODULE, concurrency: 2, processes: 2, nodeName: node, queues: [queue], shutdownTimeoutMs: 2000, taskEvents: false });
    await worker.start();
  });
  after(async () => {
    await worker?.stop();
    await mod?.app.close();
    await redis?.stop();
  });

  it('inspect active, reserved, scheduled and query_task are gathered from the children', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    // Which child takes which message is the broker's business: two run (one per child), two wait, and the
    // node's lists together hold all four.
    const naps = await Promise.all(Array.from({ length: 4 }, () => mod.nap.applyAsync([3000], {}, { queue })));
    const later = await mod.add.applyAsync([3, 3], {}, { queue, countdown: 60 });
    const all = naps.map((r) => r.id).sort();
    let active: Array<Record<string, unknown>> = [];
    let reserved: Array<{ id: string }> = [];
    await waitFor(async () => {
      [active, reserved] = (await Promise.all([one('active'), one('reserved')])) as [Array<Record<string, unknown>>, Array<{ id: string }>];
      return JSON.stringify([...active.map((a) => a.id as string), ...reserved.map((r) => r.id)].sort()) === JSON.stringify(all);
    }, 10_000, 'every task active or reserved');
    const { pool } = await stats();
    assert.ok(active.length >= 1 && reserved.length >= 2, `${active.length} active, ${reserved.length} reserved`);
    for (const a of active) {
      assert.deepEqual(a.args, [3000], 'the child lists the arguments');
      assert.ok(pool.processes.includes(a.worker_pid as number), 'run by one of the children');
      assert.equal(a.hostname, node);
    }
    const scheduled = (await one('scheduled')) as Array<{ eta: string; request: { id: string } }>;
    assert.deepEqual(scheduled.map((s) => s.request.id), [later.id]);
    const q = (await one('query_task', { ids: [reserved[0]!.id, later.id] })) as Record<string, [string, unknown]>;
    assert.ok(['reserved', 'active'].includes(q[reserved[0]!.id]![0]));
    assert.equal(q[later.id]![0], 'scheduled');
    for (const r of naps) await r.get({ timeoutMs: 15_000 });
    assert.ok((await one('revoke', { task_id: later.id })) !== undefined);
  });

  it('pool_grow and pool_shrink change the concurrency of the children (and the prefetch)', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    assert.equal((await stats()).pool['max-concurrency'], 2);
    assert.deepEqual(await one('pool_grow', { n: 6 }), { ok: 'pool will grow' });
    const grown = await stats();
    assert.equal(grown.pool['max-concurrency'], 8);
    assert.equal(grown.prefetch_count, 32);
    // Before, at most 2 ran at once (one per child); now a child runs 4, whichever child takes them.
    const naps = await Promise.all(Array.from({ length: 4 }, () => mod.nap.applyAsync([2500], {}, { queue })));
    await waitFor(async () => ((await one('active')) as unknown[]).length === 4, 10_000, 'four tasks at once');
    for (const r of naps) await r.get({ timeoutMs: 15_000 });
    assert.deepEqual(await one('pool_shrink', { n: 6 }), { ok: 'pool will shrink' });
    assert.equal((await stats()).pool['max-concurrency'], 2);
    // One task per child is the floor.
    assert.deepEqual(await one('pool_shrink', { n: 1 }), { error: 'pool cannot shrink further' });
  });

  it('add_consumer and cancel_consumer change what every child consumes', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    const extra = `${queue}-extra`;
    assert.deepEqual(await one('add_consumer', { queue: extra }), { ok: `add consumer ${extra}` });
    assert.deepEqual(((await one('active_queues')) as Array<{ name: string }>).map((q) => q.name), [queue, extra]);
    assert.equal(await (await mod.add.applyAsync([20, 22], {}, { queue: extra })).get({ timeoutMs: 10_000 }), 42);
    assert.deepEqual(await one('cancel_consumer', { queue: extra }), { ok: `no longer consuming from ${extra}` });
    const ignored = await mod.add.applyAsync([1, 2], {}, { queue: extra });
    await assert.rejects(ignored.get({ timeoutMs: 1500 }), 'nobody consumes the cancelled queue');
  });

  it('enable_events and disable_events switch the children\'s task events', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    const ac = new AbortController();
    const receiver = createEventReceiver({ broker, signal: ac.signal, bindingKeys: ['task.#'] });
    await receiver.ready;
    const seen: string[] = [];
    const reading = (async () => {
      for await (const ev of receiver) if (ev.hostname === node && ev.type === 'task-succeeded') seen.push((ev as { uuid: string }).uuid);
    })();
    const quiet = await mod.add.applyAsync([1, 1], {}, { queue });
    await quiet.get({ timeoutMs: 10_000 });
    assert.deepEqual(await one('enable_events'), { ok: 'task events enabled' });
    const loud = await Promise.all([mod.add.applyAsync([2, 2], {}, { queue }), mod.add.applyAsync([3, 3], {}, { queue }), mod.add.applyAsync([4, 4], {}, { queue })]);
    for (const r of loud) await r.get({ timeoutMs: 10_000 });
    await waitFor(() => loud.every((r) => seen.includes(r.id)), 5000, 'task-succeeded from the children');
    assert.ok(!seen.includes(quiet.id), 'no event while events were off');
    assert.deepEqual(await one('disable_events'), { ok: 'task events disabled' });
    const after = await mod.add.applyAsync([5, 5], {}, { queue });
    await after.get({ timeoutMs: 10_000 });
    await sleep(500);
    assert.ok(!seen.includes(after.id), 'no event once disabled');
    ac.abort();
    await reading;
  });

  it('revoke with terminate: a cooperative task is REVOKED; one that ignores its signal is reported still running', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    const polite = await mod.nap.applyAsync([30_000], {}, { queue });
    const running = async (id: string) => ((await one('active')) as Array<{ id: string }>).some((a) => a.id === id);
    await waitFor(() => running(polite.id), 10_000, 'the polite task running');
    assert.deepEqual(await one('revoke', { task_id: polite.id, terminate: true, signal: 'SIGTERM' }), { ok: `terminate: ${polite.id}` });
    await assert.rejects(polite.get({ timeoutMs: 10_000 }), (e: { state?: string }) => e.state === 'REVOKED');
    const rude = await mod.stubborn.applyAsync([2500], {}, { queue });
    await waitFor(() => running(rude.id), 10_000, 'the stubborn task running');
    const reply = (await one('revoke', { task_id: rude.id, terminate: true, signal: 'SIGTERM' })) as { ok: string };
    assert.match(reply.ok, new RegExp(`^terminate: ${rude.id}; still running 0.5 s after their abort signal: ${rude.id} \\(.*SIGKILL`));
    assert.deepEqual(await one('revoke', { task_id: randomUUID(), terminate: true }), { ok: 'terminate: tasks unknown' });
    assert.equal(await rude.get({ timeoutMs: 10_000 }), 'finished anyway');
  });

  it('rate_limit and time_limit reach every child, and a replacement child starts with them', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    assert.deepEqual(await one('rate_limit', { task_name: 'no.such', rate_limit: '1/s' }), { error: 'unknown task no.such' });
    assert.deepEqual(await one('time_limit', { task_name: 'ctl.spin', soft: null, hard: 1 }), { ok: 'time limits set successfully' });
    assert.deepEqual(await one('rate_limit', { task_name: 'ctl.add', rate_limit: '2/m' }), { ok: 'new rate limit set successfully' });
    // Replace both children: what was set must survive.
    const before = (await stats()).pool.processes;
    for (const pid of before) process.kill(pid, 'SIGKILL');
    await waitFor(async () => {
      const now = (await stats()).pool.processes;
      return now.length === 2 && now.every((p) => !before.includes(p));
    }, 20_000, 'two replacement children');
    await assert.rejects((await mod.spin.applyAsync([8000], {}, { queue })).get({ timeoutMs: 15_000 }), (e: { excType?: string }) => e.excType === 'TimeLimitExceeded');
    // 2/m per child: at most one per child starts at once, the others wait 30 s for a token.
    const adds = await Promise.all(Array.from({ length: 6 }, (_, i) => mod.add.applyAsync([i, i], {}, { queue })));
    const done = new Set<string>();
    for (const r of adds) void r.get({ timeoutMs: 4000 }).then(() => done.add(r.id), () => undefined);
    await sleep(4500);
    assert.ok(done.size >= 1 && done.size <= 2, `rate limited: ${done.size} of 6 ran`);
  });
});
