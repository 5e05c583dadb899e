/**
 * A worker with task events on (-E) sends Celery's events on the event
 * exchange, in order, read back by a subscription as any receiver would:
 * worker-online first, task-sent (taskSendSentEvent) → task-received →
 * task-started → task-succeeded / task-failed / task-retried, task-revoked
 * for an expired task, task-failed NotRegistered for an unknown one,
 * heartbeats, task events grouped under task.multi, worker-offline last.
 * Without -E only the worker-* events go out.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { eventExchange, type BroadcastDelivery } from '../../../src/core/broker.ts';
import { currentTask } from '../../../src/worker/context.ts';
import { memoryFixture } from '../../helpers/app-fixture.ts';
import { sleep, waitFor } from '../../helpers/services.ts';

type Ev = Record<string, unknown> & { type: string; clock: number; hostname: string };

function collector(): { got: Array<{ key: string; events: Ev[]; hostname: unknown }>; all: () => Ev[]; on: (d: BroadcastDelivery) => void } {
  const got: Array<{ key: string; events: Ev[]; hostname: unknown }> = [];
  return {
    got,
    all: () => got.flatMap((g) => g.events),
    on: (d) => {
      assert.equal(d.message.contentType, 'application/json');
      assert.equal(d.message.properties.delivery_mode, 1);
      const body = JSON.parse(d.message.body.toString('utf8')) as Ev | Ev[];
      got.push({ key: d.routingKey, events: Array.isArray(body) ? body : [body], hostname: d.message.headers.hostname });
    },
  };
}

describe('worker events (memory broker)', () => {
  it('with -E: every event type, in order, with Celery\'s routing keys', async () => {
    const f = memoryFixture({ taskSendSentEvent: true });
    const c = collector();
    const sub = await f.broker.subscribe(eventExchange(), { bindingKeys: ['#'] }, c.on);
    const add = f.app.task('t.add', (x: number, y: number) => x + y);
    const fail = f.app.task('t.fail', (msg: string) => {
      throw new RangeError(msg);
    });
    let tries = 0;
    const flaky = f.app.task('t.flaky', () => {
      if (tries++ === 0) currentTask().retry({ countdown: 0, exc: new Error('transient') });
      return 'ok';
    });
    const expiring = f.app.task('t.expiring', () => 1);
    const worker = await f.startWorker({ taskEvents: true, heartbeatIntervalS: 0.2, nodeName: 'ev1@test' });
    const r1 = await add.delay(2, 3);
    assert.equal(await r1.get({ timeoutMs: 3000 }), 5);
    const r2 = await fail.delay('bad value');
    await assert.rejects(r2.get({ timeoutMs: 3000 }));
    const r3 = await flaky.delay();
    assert.equal(await r3.get({ timeoutMs: 3000 }), 'ok');
    const r4 = await expiring.applyAsync([], {}, { countdown: 0.2, expires: 0.1 });
    await assert.rejects(r4.get({ timeoutMs: 3000 }));
    const r5 = await f.app.sendTask('t.unknown', [1]);
    await waitFor(() => c.all().some((e) => e.uuid === r5.id && e.type === 'task-failed'), 3000, 'NotRegistered event');
    await sleep(450); // heartbeats
    await worker.stop();
    await waitFor(() => c.all().some((e) => e.type === 'worker-offline'), 3000, 'worker-offline');
    await sub.close();
    await f.close();

    const all = c.all();
    const byTask = (id: string): string[] => all.filter((e) => e.uuid === id).map((e) => e.type);
    assert.deepEqual(byTask(r1.id), ['task-sent', 'task-received', 'task-started', 'task-succeeded']);
    assert.deepEqual(byTask(r2.id), ['task-sent', 'task-received', 'task-started', 'task-failed']);
    // The retry's task-sent (the client's dispatcher, unbuffered) may overtake the worker's buffered task-retried.
    assert.deepEqual(byTask(r3.id).filter((t) => t !== 'task-sent'), ['task-received', 'task-started', 'task-retried', 'task-received', 'task-started', 'task-succeeded']);
    assert.equal(byTask(r3.id).filter((t) => t === 'task-sent').length, 2);
    // Held for its countdown (received), then expired at its eta (revoked), as Celery.
    assert.deepEqual(byTask(r4.id), ['task-sent', 'task-received', 'task-revoked']);
    assert.deepEqual(byTask(r5.id), ['task-sent', 'task-failed']);

    const worker1 = all.filter((e) => e.hostname === 'ev1@test');
    assert.equal(worker1[0]!.type, 'worker-online');
    assert.equal(worker1.at(-1)!.type, 'worker-offline');
    assert.ok(worker1.filter((e) => e.type === 'worker-heartbeat').length >= 2, 'heartbeats every 0.2 s');
    // The worker's Lamport clock only goes forward.
    const clocks = worker1.map((e) => e.clock);
    assert.deepEqual(clocks, [...clocks].sort((a, b) => a - b));
    assert.equal(new Set(clocks).size, clocks.length);

    // Routing keys: worker.* one by one, the worker's task events in task.multi lists, the client's task.sent alone.
    for (const g of c.got) {
      const t = g.events[0]!.type;
      if (t.startsWith('worker-')) assert.equal(g.key, t.replace('-', '.'));
      else if (t === 'task-sent') assert.equal(g.key, 'task.sent');
      else assert.equal(g.key, 'task.multi');
      assert.equal(g.hostname, g.events[0]!.hostname);
    }

    const ev = (id: string, type: string): Ev => all.find((e) => e.uuid === id && e.type === type)!;
    assert.deepEqual(Object.keys(ev(r1.id, 'task-received')), ['hostname', 'utcoffset', 'pid', 'clock', 'uuid', 'name', 'args', 'kwargs', 'root_id', 'parent_id', 'retries', 'eta', 'expires', 'timestamp', 'type']);
    assert.equal(ev(r1.id, 'task-received').args, '(2, 3)');
    assert.equal(ev(r1.id, 'task-received').kwargs, '{}');
    assert.equal(ev(r1.id, 'task-succeeded').result, '5');
    assert.equal(typeof ev(r1.id, 'task-succeeded').runtime, 'number');
    assert.equal(ev(r2.id, 'task-failed').exception, "RangeError('bad value')");
    assert.equal(ev(r3.id, 'task-retried').exception, "Error('transient')");
    assert.deepEqual(
      { terminated: ev(r4.id, 'task-revoked').terminated, signum: ev(r4.id, 'task-revoked').signum, expired: ev(r4.id, 'task-revoked').expired },
      { terminated: false, signum: null, expired: true },
    );
    assert.equal(ev(r5.id, 'task-failed').exception, "NotRegistered('t.unknown')");
    const sent = ev(r1.id, 'task-sent');
    assert.match(sent.hostname, /^gen\d+@/);
    assert.deepEqual([sent.queue, sent.exchange, sent.routing_key], ['celery', '', 'celery']);
    const hb = all.find((e) => e.type === 'worker-heartbeat')!;
    assert.deepEqual(Object.keys(hb), ['hostname', 'utcoffset', 'pid', 'clock', 'freq', 'active', 'processed', 'loadavg', 'sw_ident', 'sw_ver', 'sw_sys', 'timestamp', 'type']);
    assert.equal(hb.sw_ident, 'celeriac');
  });

  it('without -E: worker events only; setTaskEvents turns task events on; --without-heartbeat sends none', async () => {
    const f = memoryFixture();
    const c = collector();
    const sub = await f.broker.subscribe(eventExchange(), { bindingKeys: ['#'] }, c.on);
    const add = f.app.task('t.add', (x: number, y: number) => x + y);
    const w1 = await f.startWorker({ nodeName: 'plain@test' });
    const w2 = await f.startWorker({ nodeName: 'silent@test', heartbeat: false });
    assert.equal(await (await add.delay(1, 1)).get({ timeoutMs: 3000 }), 2);
    await sleep(50);
    assert.equal(c.all().filter((e) => e.type.startsWith('task-')).length, 0, 'no task event without -E');
    await w1.stop();
    await w2.stop();
    await sleep(50);
    await sub.close();
    await f.close();
    assert.deepEqual(c.all().filter((e) => e.hostname === 'plain@test').map((e) => e.type), ['worker-online', 'worker-offline']);
    assert.equal(c.all().filter((e) => e.hostname === 'silent@test').length, 0);
  });
});

describe('worker events switched at run time (remote control)', () => {
  it('setTaskEvents turns task events on and off, starting a dispatcher when there was none', async () => {
    const f = memoryFixture();
    const c = collector();
    const sub = await f.broker.subscribe(eventExchange(), { bindingKeys: ['#'] }, c.on);
    const add = f.app.task('t.add', (x: number, y: number) => x + y);
    const w = (await f.startWorker({ nodeName: 'switch@test', heartbeat: false })) as import('../../../src/worker/worker.ts').Worker;
    assert.equal(w.events, undefined);
    const r1 = await add.delay(1, 1);
    await r1.get({ timeoutMs: 3000 });
    assert.equal(await w.setTaskEvents(true), true);
    assert.equal(await w.setTaskEvents(true), false, 'already on');
    const r2 = await add.delay(2, 2);
    await r2.get({ timeoutMs: 3000 });
    await waitFor(() => c.all().some((e) => e.uuid === r2.id && e.type === 'task-succeeded'), 3000, 'events after enable');
    assert.equal(await w.setTaskEvents(false), true);
    const r3 = await add.delay(3, 3);
    await r3.get({ timeoutMs: 3000 });
    await sleep(50);
    await sub.close();
    await f.close();
    assert.equal(c.all().filter((e) => e.uuid === r1.id || e.uuid === r3.id).length, 0);
    assert.deepEqual(c.all().filter((e) => e.uuid === r2.id).map((e) => e.type), ['task-received', 'task-started', 'task-succeeded']);
    assert.equal(c.all().filter((e) => e.type.startsWith('worker-')).length, 0, 'no heartbeat: it was off');
  });
});
