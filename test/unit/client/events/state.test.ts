/**
 * The state aggregator: Celery's liveness rule (last heartbeat + freq × 2),
 * offline, task state precedence (out-of-order events do not move a task
 * back), counts and rates per task name, bounded memory.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createEventState } from '../../../../src/client/events/state.ts';
import type { CeleryEvent } from '../../../../src/client/events/types.ts';

const W = 'w1@host';
let clock = 0;
function ev(type: string, at: number, fields: Record<string, unknown> = {}): CeleryEvent {
  return { type, hostname: W, timestamp: at, local_received: at, clock: ++clock, ...fields } as CeleryEvent;
}
const task = (type: string, at: number, uuid: string, fields: Record<string, unknown> = {}): CeleryEvent => ev(type, at, { uuid, ...fields });

describe('event state: workers', () => {
  it('alive until the last heartbeat is freq × 2 old; fields from the latest heartbeat', () => {
    const s = createEventState();
    s.apply(ev('worker-online', 100, { freq: 2, active: 0, processed: 0, loadavg: [1, 2, 3], sw_ident: 'py-celery', sw_ver: '5.2.6', pid: 9 }));
    const w = s.worker(W)!;
    assert.equal(s.isAlive(w, 100), true);
    assert.equal(s.heartbeatExpires(w), 104);
    assert.equal(s.isAlive(w, 103.9), true);
    assert.equal(s.isAlive(w, 104), false, 'expired at exactly freq × 2');
    s.apply(ev('worker-heartbeat', 103, { freq: 2, active: 1, processed: 5 }));
    assert.equal(s.isAlive(w, 106.5), true);
    assert.equal(w.active, 1);
    assert.equal(w.processed, 5);
    assert.equal(w.pid, 9);
    assert.equal(w.sw_ident, 'py-celery');
  });

  it('a worker that did not say its freq gets Celery\'s 60 s', () => {
    const s = createEventState();
    s.apply(ev('worker-heartbeat', 0));
    const w = s.worker(W)!;
    assert.equal(w.freq, 60);
    assert.equal(s.isAlive(w, 119), true);
    assert.equal(s.isAlive(w, 120), false);
  });

  it('keeps the last 4 heartbeats in order, even out of order', () => {
    const s = createEventState();
    for (const t of [10, 12, 11, 14, 16, 13]) s.apply(ev('worker-heartbeat', t, { freq: 2 }));
    const hb = s.worker(W)!.heartbeats;
    assert.equal(hb.length, 4);
    assert.deepEqual([...hb].sort((a, b) => a - b), hb);
    assert.equal(hb[hb.length - 1], 16);
  });

  it('worker-offline makes it offline at once; it stays listed; a new heartbeat revives it', () => {
    const s = createEventState();
    s.apply(ev('worker-online', 100, { freq: 2 }));
    s.apply(ev('worker-offline', 101, { freq: 2 }));
    const w = s.worker(W)!;
    assert.equal(s.isAlive(w, 101), false);
    assert.equal(w.offline, true);
    assert.equal(s.workers().length, 1);
    s.apply(ev('worker-heartbeat', 110, { freq: 2 }));
    assert.equal(s.isAlive(w, 110), true);
  });

  it('task events from a worker count as its heartbeats', () => {
    const s = createEventState();
    s.apply(ev('worker-online', 100, { freq: 2 }));
    s.apply(task('task-started', 103, 'a'));
    assert.equal(s.isAlive(s.worker(W)!, 106), true);
    assert.equal(s.isAlive(s.worker(W)!, 107), false);
  });
});

describe('event state: tasks', () => {
  it('follows a task through its life with its fields and timestamps', () => {
    const s = createEventState();
    s.apply({ ...task('task-sent', 1, 'a', { name: 'tasks.add', args: '(2, 3)', kwargs: '{}', queue: 'celery' }), hostname: 'gen1@client' });
    s.apply(task('task-received', 2, 'a', { name: 'tasks.add', args: '(2, 3)', kwargs: '{}', retries: 0 }));
    s.apply(task('task-started', 3, 'a'));
    s.apply(task('task-succeeded', 4, 'a', { result: '5', runtime: 0.5 }));
    const t = s.task('a')!;
    assert.equal(t.state, 'SUCCESS');
    assert.equal(t.name, 'tasks.add');
    assert.equal(t.client, 'gen1@client');
    assert.equal(t.worker, W);
    assert.deepEqual([t.sent, t.received, t.started, t.succeeded], [1, 2, 3, 4]);
    assert.equal(t.result, '5');
    assert.equal(t.runtime, 0.5);
    assert.equal(t.queue, 'celery');
    assert.equal(s.taskCount, 1);
  });

  it('an event that happened before the current state does not move it back; received still fills in its fields', () => {
    const s = createEventState();
    s.apply(task('task-succeeded', 4, 'b', { result: '5' }));
    s.apply(task('task-started', 3, 'b'));
    s.apply(task('task-received', 2, 'b', { name: 'tasks.add', args: '(1,)', result: 'not kept' }));
    const t = s.task('b')!;
    assert.equal(t.state, 'SUCCESS');
    assert.equal(t.name, 'tasks.add');
    assert.equal(t.args, '(1,)');
    assert.equal(t.result, '5');
    assert.equal(t.started, 3, 'the timestamp of each event is kept');
  });

  it('RETRY always moves the state, and so does what follows it', () => {
    const s = createEventState();
    s.apply(task('task-started', 1, 'c'));
    s.apply(task('task-retried', 2, 'c', { exception: "ValueError('transient')" }));
    assert.equal(s.task('c')!.state, 'RETRY');
    s.apply(task('task-received', 3, 'c'));
    assert.equal(s.task('c')!.state, 'RECEIVED');
    s.apply(task('task-failed', 4, 'c', { exception: "ValueError('x')" }));
    s.apply(task('task-revoked', 5, 'c', { terminated: true }));
    assert.equal(s.task('c')!.state, 'FAILURE', 'REVOKED ranks below FAILURE');
    assert.equal(s.task('c')!.exception, "ValueError('x')");
  });

  it('counts by state and per name, rates of finished tasks over the window, recent tasks newest first', () => {
    const s = createEventState({ rateWindow: 10 });
    for (let i = 0; i < 20; i++) {
      s.apply(task('task-received', 100 + i * 0.1, `ok${i}`, { name: 'tasks.add' }));
      s.apply(task('task-succeeded', 100 + i * 0.1, `ok${i}`));
    }
    s.apply(task('task-received', 101, 'bad', { name: 'tasks.fail' }));
    s.apply(task('task-failed', 101, 'bad', { exception: 'E' }));
    s.apply(task('task-received', 101, 'run', { name: 'tasks.sleep' }));
    s.apply(task('task-started', 101, 'run'));
    assert.deepEqual(s.countsByState(), { SUCCESS: 20, FAILURE: 1, STARTED: 1 });
    const types = s.taskTypes(105);
    assert.deepEqual(types.map((t) => [t.name, t.total, t.rate]), [['tasks.add', 20, 2], ['tasks.fail', 1, 0.1], ['tasks.sleep', 1, 0]]);
    assert.equal(s.rate(105), 2.1);
    assert.equal(s.rate(200), 0, 'outside the window');
    assert.deepEqual(s.recentTasks(2).map((t) => t.uuid), ['run', 'bad']);
    assert.equal(s.eventCount, 44);
  });

  it('memory is bounded: the least recently updated tasks and workers go first', () => {
    const s = createEventState({ maxTasks: 3, maxWorkers: 2 });
    for (const id of ['a', 'b', 'c']) s.apply(task('task-received', 1, id));
    s.apply(task('task-started', 2, 'a'));
    s.apply(task('task-received', 3, 'd'));
    assert.equal(s.task('b'), undefined);
    assert.ok(s.task('a') && s.task('c') && s.task('d'));
    for (const h of ['x@1', 'y@1', 'z@1']) s.apply({ ...ev('worker-heartbeat', 1), hostname: h });
    assert.deepEqual(s.workers().map((w) => w.hostname).sort(), ['y@1', 'z@1']);
  });

  it('unknown event types are counted and otherwise ignored', () => {
    const s = createEventState();
    s.apply(ev('custom-thing', 1));
    s.apply(ev('task-custom', 1)); // no uuid
    assert.equal(s.eventCount, 2);
    assert.equal(s.workers().length, 0);
  });
});
