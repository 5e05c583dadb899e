/**
 * The dashboard model over the in-memory broker with an in-process worker
 * (task events and remote control on): tasks, detail and redaction,
 * workers, queues with pause/resume, actions, charts, metrics and health.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createDashboardModel, type DashboardModel, type LiveUpdate } from '../../../src/dashboard/model/index.ts';
import { memoryFixture, type MemoryFixture } from '../../helpers/app-fixture.ts';
import { sleep, waitFor } from '../../helpers/services.ts';

const ALLOW_ALL = { workerControlAllow: ['@all'] };
const dir = mkdtempSync(join(tmpdir(), 'dash-model-'));
after(() => rmSync(dir, { recursive: true, force: true }));

async function setup(store: 'memory' | 'sqlite', queue: string): Promise<{ f: MemoryFixture; model: DashboardModel }> {
  const f = memoryFixture({ ...ALLOW_ALL, taskSendSentEvent: true, taskDefaultQueue: queue });
  const model = await createDashboardModel({
    app: f.app,
    queues: [queue],
    inspectIntervalMs: 500,
    store: store === 'memory' ? { kind: 'memory', maxTasks: 1000 } : { kind: 'sqlite', path: join(dir, `${queue}.db`), retentionDays: 30 },
  });
  return { f, model };
}

for (const store of ['memory', 'sqlite'] as const) {
  describe(`dashboard model (${store} store)`, () => {
    it('shows tasks from events, filters them, and redacts their data unless asked for clear text', async () => {
      const { f, model } = await setup(store, `q-${store}-1`);
      const updates: LiveUpdate[] = [];
      const unsubscribe = model.subscribe((u) => updates.push(u));
      try {
        const add = f.app.task('t.add', (x: number, y: number) => x + y);
        const fail = f.app.task('t.fail', (who: string) => {
          throw new RangeError(`no user ${who}`);
        });
        const parent = f.app.task('t.parent', async () => {
          const child = await f.app.sendTask('t.add', [40, 2]);
          return child.id;
        });
        await f.startWorker({ taskEvents: true, heartbeatIntervalS: 0.2, nodeName: `w-${store}@test` });
        const r1 = await add.delay(2, 3);
        assert.equal(await r1.get({ timeoutMs: 5000 }), 5);
        const r2 = await fail.delay('alice@example.com');
        await assert.rejects(r2.get({ timeoutMs: 5000 }));
        const rp = await parent.delay();
        const childId = (await rp.get({ timeoutMs: 5000 })) as string;

        await waitFor(async () => (await model.task(childId))?.state === 'SUCCESS' && (await model.task(r2.id))?.state === 'FAILURE', 5000, 'the tasks in the model');
        const page = await model.tasks({});
        assert.ok(page.items.length >= 4);
        assert.equal(page.total, page.items.length);
        assert.deepEqual(
          page.items.map((t) => t.updated),
          [...page.items.map((t) => t.updated)].sort((a, b) => b - a),
          'newest first',
        );
        const ok = page.items.find((t) => t.id === r1.id)!;
        assert.equal(ok.state, 'SUCCESS');
        assert.equal(ok.name, 't.add');
        assert.equal(ok.worker, `w-${store}@test`);
        assert.equal(ok.args, '(***, ***)', 'redacted by default');
        assert.equal(ok.result, '***');
        assert.ok(ok.received! <= ok.started! && ok.started! <= ok.finished!);

        assert.deepEqual((await model.tasks({ state: 'FAILURE' })).items.map((t) => t.id), [r2.id]);
        assert.deepEqual((await model.tasks({ name: 'fai' })).items.map((t) => t.id), [r2.id], 'a name substring');
        assert.equal((await model.tasks({ name: 't.add' })).items.length, 2);
        assert.deepEqual((await model.tasks({ id: r1.id })).items.map((t) => t.id), [r1.id]);
        assert.equal((await model.tasks({ worker: 'nobody@x' })).items.length, 0);
        const first = await model.tasks({ limit: 2 });
        assert.equal(first.items.length, 2);
        const second = await model.tasks({ limit: 2, cursor: first.nextCursor! });
        assert.equal(new Set([...first.items, ...second.items].map((t) => t.id)).size, 4, 'a cursor continues without repeating');

        const failed = (await model.task(r2.id))!;
        assert.equal(failed.clear, false);
        assert.equal(failed.args, "('***',)");
        assert.equal(failed.exception, "RangeError('***')");
        assert.doesNotMatch(JSON.stringify(failed), /alice@example\.com/, 'nothing of the argument leaks by default, timeline included');
        assert.deepEqual(failed.timeline.map((e) => e.type), ['task-sent', 'task-received', 'task-started', 'task-failed']);
        const clear = (await model.task(r2.id, { clear: true }))!;
        assert.equal(clear.clear, true);
        assert.equal(clear.args, "('alice@example.com',)");
        assert.match(clear.exception!, /no user alice@example\.com/);
        assert.equal(clear.queue, `q-${store}-1`);

        const child = (await model.task(childId))!;
        assert.equal(child.parentId, rp.id);
        assert.equal(child.rootId, rp.id);
        assert.deepEqual((await model.task(rp.id))!.children, [childId]);

        assert.deepEqual(model.taskNames().filter((n) => n.startsWith('t.')), ['t.add', 't.fail', 't.parent']);
        const points = await model.series({ from: Date.now() / 1000 - 120, bucketSeconds: 60 });
        const sum = (k: 'succeeded' | 'failed' | 'received') => points.reduce((a, p) => a + p[k], 0);
        assert.equal(sum('succeeded'), 3);
        assert.equal(sum('failed'), 1);
        assert.equal(sum('received'), 4);
        assert.ok(points.some((p) => p.latencyP50 !== undefined && p.latencyP95! >= p.latencyP50));
        assert.equal((await model.series({ from: Date.now() / 1000 - 120, taskName: 't.fail' })).reduce((a, p) => a + p.failed, 0), 1);

        await waitFor(() => model.worker(`w-${store}@test`)?.registered !== undefined, 5000, 'an inspect round');
        const w = model.worker(`w-${store}@test`)!;
        assert.equal(w.status, 'online');
        assert.equal(w.software?.startsWith('celeriac'), true);
        assert.ok(w.registered!.includes('t.add'));
        assert.deepEqual(w.queues, [`q-${store}-1`]);
        assert.equal(w.succeeded, 3);
        assert.equal(w.failed, 1);
        assert.ok(w.pool?.target !== undefined);

        assert.ok(updates.some((u) => u.kind === 'task' && u.task.id === r1.id && u.task.args === '(***, ***)'), 'live updates are redacted too');
        assert.ok(updates.some((u) => u.kind === 'worker'));
        assert.equal(model.health().ready, true, model.health().detail);
      } finally {
        unsubscribe();
        await model.close();
        await f.close();
      }
    });
  });
}

describe('dashboard model: queues and actions', () => {
  it('pauses a queue on the workers consuming it and resumes exactly them, after a restart too', async () => {
    const queue = 'q-pause';
    const first = await setup('sqlite', queue);
    const f = first.f;
    let model = first.model;
    try {
      const add = f.app.task('t.add', (x: number, y: number) => x + y);
      await f.startWorker({ taskEvents: true, heartbeatIntervalS: 0.2, nodeName: 'pw@test', queues: [queue] });
      await waitFor(async () => (await model.queues()).find((q) => q.name === queue)?.consumers.includes('pw@test') === true, 5000, 'the consumer known');
      const paused = await model.actions.pauseQueue(queue);
      assert.equal(paused.ok, true, paused.message);
      assert.deepEqual(paused.replies?.map((r) => r.worker), ['pw@test']);
      const r = await add.delay(1, 1);
      await sleep(300);
      let view = (await model.queues()).find((q) => q.name === queue)!;
      assert.equal(view.paused, true);
      assert.equal(view.depth, 1, 'the task waits while the queue is paused');
      assert.ok(view.rateIn > 0, 'task-sent counted in');
      assert.ok(view.oldestAgeSeconds !== undefined && view.oldestAgeSeconds >= 0);
      // A restarted dashboard still knows the queue is paused, and on which workers.
      await model.close();
      model = await createDashboardModel({ app: f.app, queues: [queue], inspectIntervalMs: 500, store: { kind: 'sqlite', path: join(dir, `${queue}.db`) } });
      assert.equal((await model.queues()).find((q) => q.name === queue)!.paused, true);
      const resumed = await model.actions.resumeQueue(queue);
      assert.equal(resumed.ok, true, resumed.message);
      assert.equal(await r.get({ timeoutMs: 5000 }), 2);
      await waitFor(async () => (await model.queues()).find((q) => q.name === queue)?.depth === 0, 5000, 'drained');
      view = (await model.queues()).find((q) => q.name === queue)!;
      assert.equal(view.paused, false);
      assert.equal((await model.actions.resumeQueue(queue)).ok, false, 'nothing left to resume');
      assert.equal((await model.actions.pauseQueue('nobody-consumes-this')).ok, false);
    } finally {
      await model.close();
      await f.close();
    }
  });

  it('revokes, rate-limits and grows the pool with per-worker replies; validates input', async () => {
    const { f, model } = await setup('memory', 'q-actions');
    try {
      f.app.task('t.add', (x: number, y: number) => x + y);
      await f.startWorker({ taskEvents: true, nodeName: 'aw@test' });
      const revoke = await model.actions.revoke('some-task-id', { terminate: true });
      assert.equal(revoke.ok, true, revoke.message);
      assert.deepEqual(revoke.replies?.map((r) => [r.worker, r.ok]), [['aw@test', true]]);
      const rate = await model.actions.rateLimit('t.add', '10/m', 'aw@test');
      assert.equal(rate.ok, true, rate.message);
      assert.equal((await model.actions.rateLimit('t.add', 'lots')).ok, false);
      assert.equal((await model.actions.revoke('x', { signal: 'SIGNOPE' })).ok, false);
      assert.equal((await model.actions.poolGrow('aw@test', 0)).ok, false);
      const unknown = await model.actions.poolGrow('ghost@nowhere', 1);
      assert.equal(unknown.ok, false, 'no reply from a worker that does not exist');
      assert.match(unknown.message, /did not reply/);
    } finally {
      await model.close();
      await f.close();
    }
  });

  it('retries a dead-lettered task with its original message, and says why it cannot retry another', async () => {
    const queue = 'q-retry';
    const { f, model } = await setup('memory', queue);
    try {
      const ok = f.app.task('t.ok', () => 'fine');
      await f.startWorker({ taskEvents: true, nodeName: 'rw@test', queues: [queue] });
      const lost = await f.app.sendTask('t.missing', ['secret-arg']);
      await waitFor(async () => (await f.broker.deadLetters(queue)).length === 1, 5000, 'the unknown task dead-lettered');
      const letters = await model.deadLetters(queue);
      assert.equal(letters.length, 1);
      assert.equal(letters[0]!.id, lost.id);
      assert.equal(letters[0]!.name, 't.missing');
      assert.match(letters[0]!.reason, /t\.missing/);
      assert.equal(letters[0]!.args, "('***',)");
      assert.equal((await model.deadLetters(queue, { clear: true }))[0]!.args, "('secret-arg',)");
      // Broker readings are cached for 2 s (the view and /metrics share them).
      await waitFor(async () => (await model.queues()).find((q) => q.name === queue)!.deadLetters === 1, 5000, 'the dead letter counted');

      const done = await ok.delay();
      await done.get({ timeoutMs: 5000 });
      const refused = await model.actions.retry(done.id);
      assert.equal(refused.ok, false);
      assert.match(refused.message, /not in the dead-letter queue/);

      const seen = (await model.task(lost.id))?.timeline.length ?? 0;
      const retried = await model.actions.retry(lost.id);
      assert.equal(retried.ok, true, retried.message);
      assert.match(retried.message, /original message/);
      // The same message reached the worker again (which still does not know the task, and dead-letters it again).
      await waitFor(async () => ((await model.task(lost.id))?.timeline.length ?? 0) > seen, 5000, 'new events of the task');
      await waitFor(async () => (await f.broker.deadLetters(queue)).length === 1, 5000, 'dead-lettered again');
      const drop = await model.actions.dropDeadLetters(queue);
      assert.equal(drop.ok, true);
    } finally {
      await model.close();
      await f.close();
    }
  });

  it('exposes Prometheus metrics on its own registry, and health', async () => {
    const { f, model } = await setup('memory', 'q-metrics');
    try {
      const add = f.app.task('t.add', (x: number, y: number) => x + y);
      await f.startWorker({ taskEvents: true, nodeName: 'mw@test', heartbeatIntervalS: 0.2 });
      await (await add.delay(1, 2)).get({ timeoutMs: 5000 });
      await waitFor(async () => (await model.tasks({ state: 'SUCCESS' })).items.length === 1, 5000, 'the task stored');
      const { contentType, body } = await model.metrics();
      assert.match(contentType, /^text\/plain/);
      assert.match(body, /celeriac_queue_depth\{queue="q-metrics"\} 0/);
      assert.match(body, /celeriac_tasks\{name="t\.add",state="SUCCESS"\} 1/);
      assert.match(body, /celeriac_task_runtime_seconds_count\{name="t\.add"\} 1/);
      assert.match(body, /celeriac_worker_up\{worker="mw@test"\} 1/);
      assert.match(body, /celeriac_dashboard_event_lag_seconds \d/);
      assert.match(body, /# TYPE celeriac_security_events_total counter/);
      const { register } = await import('prom-client');
      assert.equal((await register.metrics()).includes('celeriac_queue_depth'), false, 'nothing on the global registry');
      const h = model.health();
      assert.deepEqual([h.live, h.ready], [true, true], h.detail);
      await model.close();
      assert.deepEqual([model.health().live, model.health().ready], [false, false]);
    } finally {
      await model.close();
      await f.close();
    }
  });
});
