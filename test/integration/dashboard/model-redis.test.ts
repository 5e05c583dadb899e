/**
 * The dashboard model on a real Redis (a private redis-server on a free
 * loopback port) with a real `celeriac worker` process and a real Python
 * Celery 5.2.6 worker, both sending task events (-E):
 * - tasks run by either worker show up, with their worker, state, timeline;
 *   a chain sent by a Python client shows its parent and children;
 *   both workers are listed (heartbeats, inspect); filters and cursors work;
 * - args, results and errors are redacted unless asked for in clear;
 * - pausing a queue stops its consumer (Python and Celeriac), resuming
 *   restarts exactly it;
 * - the SQLite store prunes what is past its retention.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createApp, type App } from '../../../src/client/app.ts';
import { createDashboardModel, type DashboardModel } from '../../../src/dashboard/model/index.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { startCeleriacWorker, type CeleriacWorkerProcess } from '../../helpers/celeriac-worker.ts';
import { pyClient, startPythonWorker, type PythonWorker } from '../../helpers/python-celery.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { hasPythonCelery, requireService, sleep, waitFor } from '../../helpers/services.ts';

describe('dashboard model with a Celeriac and a Python worker (Redis)', () => {
  const ready = hasRedisServer() && hasPythonCelery();
  const tag = randomUUID().slice(0, 6);
  const tsQueue = `dash-ts-${tag}`;
  const pyQueue = `dash-py-${tag}`;
  const tsNode = `ts-${tag}@dash`;
  const pyNode = `py-${tag}@dash`;
  const dir = mkdtempSync(join(tmpdir(), 'dash-int-'));
  let redis: RedisServer | undefined;
  let tsWorker: CeleriacWorkerProcess | undefined;
  let pyWorker: PythonWorker | undefined;
  let app: App | undefined;
  let model: DashboardModel | undefined;

  before(async () => {
    if (!ready) return;
    redis = await startRedisServer();
    const broker = redis.url(3);
    const backend = redis.url(4);
    [tsWorker, pyWorker] = await Promise.all([
      startCeleriacWorker({
        env: { CELERIAC_BROKER_URL: broker, CELERIAC_RESULT_BACKEND: backend, NODE_ENV: 'test', CELERIAC_WORKER_CONTROL_ALLOW: '@all' },
        // Also `celery`: a chain's next steps go to the worker's default queue (as in Celery).
        args: ['-E', '-n', tsNode, '-Q', `${tsQueue},celery`, '-P', 'solo', '-c', '2', '--heartbeat-interval', '1'],
      }),
      startPythonWorker({ brokerUrl: broker, backendUrl: backend, name: pyNode, concurrency: 1, env: { CELERY_SEND_EVENTS: '1' }, args: ['-Q', pyQueue] }),
    ]);
    app = createApp({ brokerUrl: broker, resultBackend: backend, taskSendSentEvent: true, logger: createLogger({ level: 'silent' }) });
    model = await createDashboardModel({ app, queues: [tsQueue, pyQueue], inspectIntervalMs: 1000, store: { kind: 'sqlite', path: join(dir, 'tasks.db'), retentionDays: 30 } });
  });

  after(async () => {
    await model?.close();
    await app?.close();
    await Promise.allSettled([tsWorker?.stop(), pyWorker?.stop()]);
    await redis?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('shows tasks and workers from both, filters and pages them, and redacts by default', async (t) => {
    if (!requireService(t, ready, 'redis-server and python3-celery')) return;
    const m = model!;
    const a = app!;
    const ts = await a.sendTask('tasks.add', [2, 3], {}, { queue: tsQueue });
    const py = await a.sendTask('tasks.add', [4, 5], {}, { queue: pyQueue });
    const tsFail = await a.sendTask('tasks.fail', ['card 4111-1111'], {}, { queue: tsQueue });
    const pyFail = await a.sendTask('tasks.fail', ['card 4111-1111'], {}, { queue: pyQueue });
    assert.equal(await ts.get({ timeoutMs: 20_000 }), 5);
    assert.equal(await py.get({ timeoutMs: 20_000 }), 9);
    await assert.rejects(tsFail.get({ timeoutMs: 20_000 }));
    await assert.rejects(pyFail.get({ timeoutMs: 20_000 }));
    await waitFor(async () => {
      const done = await Promise.all([ts, py, tsFail, pyFail].map((r) => m.task(r.id)));
      return done.every((d) => d && (d.state === 'SUCCESS' || d.state === 'FAILURE'));
    }, 20_000, 'all four tasks finished in the model');

    const byId = async (id: string) => (await m.task(id))!;
    for (const [r, node] of [[ts, tsNode], [py, pyNode]] as const) {
      const d = await byId(r.id);
      assert.equal(d.worker, node);
      assert.equal(d.name, 'tasks.add');
      assert.equal(d.state, 'SUCCESS');
      assert.equal(d.args, '(***, ***)');
      assert.equal(d.result, '***');
      assert.ok(d.timeline.some((e) => e.type === 'task-received') && d.timeline.some((e) => e.type === 'task-succeeded'), `${node}: ${d.timeline.map((e) => e.type).join(', ')}`);
      assert.ok(d.runtime !== undefined && d.runtime >= 0);
    }
    for (const r of [tsFail, pyFail]) {
      const d = await byId(r.id);
      assert.equal(d.state, 'FAILURE');
      assert.equal(d.exception, "ValueError('***')");
      assert.doesNotMatch(JSON.stringify(d), /4111/, 'no part of the argument or the error message, traceback included');
      const clear = (await m.task(r.id, { clear: true }))!;
      assert.match(clear.args!, /card 4111-1111/);
      assert.match(clear.exception!, /ValueError/);
    }
    const pyClear = (await m.task(pyFail.id, { clear: true }))!;
    assert.match(pyClear.traceback ?? '', /Traceback/, 'the Python worker\'s traceback');

    assert.deepEqual((await m.tasks({ worker: pyNode })).items.map((x) => x.id).sort(), [py.id, pyFail.id].sort());
    assert.deepEqual((await m.tasks({ worker: tsNode, state: 'FAILURE' })).items.map((x) => x.id), [tsFail.id]);
    assert.equal((await m.tasks({ name: 'fail' })).total, 2);
    const p1 = await m.tasks({ limit: 3 });
    const p2 = await m.tasks({ limit: 3, cursor: p1.nextCursor! });
    const ids = [...p1.items, ...p2.items].map((x) => x.id);
    assert.equal(new Set(ids).size, ids.length);
    assert.ok([ts, py, tsFail, pyFail].every((r) => ids.includes(r.id)));

    await waitFor(() => {
      const w = m.workers();
      // The software comes with heartbeats (every 2 s from Python); registered tasks with an inspect round.
      const known = (node: string) => w.some((x) => x.hostname === node && x.status === 'online' && x.registered !== undefined && x.software !== undefined);
      return known(pyNode) && known(tsNode);
    }, 20_000, 'both workers online with heartbeats and inspect replies');
    const pw = m.worker(pyNode)!;
    assert.match(pw.software ?? '', /py-celery/);
    assert.ok(pw.registered!.includes('tasks.add'));
    assert.deepEqual(pw.queues, [pyQueue]);
    assert.equal(pw.pool?.target, 1);
    const tw = m.worker(tsNode)!;
    assert.match(tw.software ?? '', /celeriac/);
    assert.deepEqual([...tw.queues!].sort(), ['celery', tsQueue].sort());
    assert.ok(tw.succeeded >= 1 && tw.failed >= 1);

    const metrics = (await m.metrics()).body;
    assert.match(metrics, new RegExp(`celeriac_worker_up\\{worker="${pyNode}"\\} 1`));
    assert.match(metrics, /celeriac_worker_security_events\{worker="ts-/, 'the Celeriac worker\'s security counters from inspect stats');
    assert.equal(m.health().ready, true, m.health().detail);
  });

  it('follows a chain sent by a Python client to the Celeriac worker: task-sent, parent and children', async (t) => {
    if (!requireService(t, ready, 'redis-server and python3-celery')) return;
    const m = model!;
    const out = await pyClient(['chain', '1', '2', '3'], { CELERY_BROKER_URL: redis!.url(3), CELERY_RESULT_BACKEND: redis!.url(4), CELERY_SEND_EVENTS: '1' });
    assert.equal(out.result, 6, JSON.stringify(out));
    // The chain's first task was sent by Python (task-sent from the client), its next by the Celeriac worker.
    let first: string | undefined;
    await waitFor(async () => {
      const page = await m.tasks({ name: 'tasks.add', worker: tsNode, limit: 100 });
      for (const row of page.items) {
        const d = await m.task(row.id);
        if (d && d.children.length > 0 && d.timeline.some((e) => e.type === 'task-sent') && !d.parentId) first = d.id;
      }
      return first !== undefined;
    }, 20_000, 'the chain\'s first task with its child').catch(async (err: Error) => {
      const page = await m.tasks({ name: 'tasks.add', limit: 100 });
      const details = await Promise.all(page.items.map((r) => m.task(r.id)));
      throw new Error(`${err.message}: ${JSON.stringify(details.map((d) => ({ id: d?.id, w: d?.worker, p: d?.parentId, r: d?.rootId, c: d?.children, tl: d?.timeline.map((e) => e.type) })))}`);
    });
    const head = (await m.task(first!))!;
    assert.equal(head.state, 'SUCCESS');
    const child = (await m.task(head.children[0]!))!;
    assert.equal(child.parentId, head.id);
    assert.equal(child.rootId, head.id);
    assert.equal(child.worker, tsNode);
  });

  for (const which of ['python', 'celeriac'] as const) {
    it(`pauses and resumes a queue consumed by the ${which} worker`, async (t) => {
      if (!requireService(t, ready, 'redis-server and python3-celery')) return;
      const m = model!;
      const queue = which === 'python' ? pyQueue : tsQueue;
      const node = which === 'python' ? pyNode : tsNode;
      await waitFor(async () => (await m.queues()).find((q) => q.name === queue)?.consumers.includes(node) === true, 20_000, 'the consumer known');
      const paused = await m.actions.pauseQueue(queue);
      assert.equal(paused.ok, true, paused.message);
      assert.deepEqual(paused.replies?.map((r) => r.worker), [node]);
      await sleep(500);
      const r = await app!.sendTask('tasks.add', [1, 1], {}, { queue });
      await sleep(1500);
      await waitFor(async () => {
        const v = (await m.queues()).find((q) => q.name === queue)!;
        return v.paused && v.depth === 1;
      }, 10_000, 'the task waiting in the paused queue');
      const resumed = await m.actions.resumeQueue(queue);
      assert.equal(resumed.ok, true, resumed.message);
      assert.deepEqual(resumed.replies?.map((x) => x.worker), [node]);
      assert.equal(await r.get({ timeoutMs: 20_000 }), 2);
      const v = (await m.queues()).find((q) => q.name === queue)!;
      assert.equal(v.paused, false);
    });
  }

  it('prunes the SQLite store past its retention', async (t) => {
    if (!requireService(t, ready, 'redis-server and python3-celery')) return;
    // A second model on the same broker, keeping tasks 2 seconds.
    const short = await createDashboardModel({ app: app!, inspectIntervalMs: 60_000, store: { kind: 'sqlite', path: join(dir, 'short.db'), retentionDays: 2 / 86_400 } });
    try {
      const r = await app!.sendTask('tasks.add', [3, 3], {}, { queue: tsQueue });
      assert.equal(await r.get({ timeoutMs: 20_000 }), 6);
      await waitFor(async () => (await short.task(r.id))?.state === 'SUCCESS', 10_000, 'stored');
      await waitFor(async () => (await short.task(r.id)) === undefined, 15_000, 'pruned after 2 s (checked every 5 s)');
      assert.equal((await short.tasks({})).total, 0);
      assert.ok((await model!.task(r.id)) !== undefined, 'the 30-day store keeps it');
    } finally {
      await short.close();
    }
  });
});
