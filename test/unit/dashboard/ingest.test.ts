/**
 * Ingestion: Python Celery 5.2.6's own events (the golden captures) folded
 * into stored tasks, Celery's state rules (an earlier event arriving late
 * only fills in fields), batching per tick, and the timeline's bounds.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parseEvent } from '../../../src/client/events/parse.ts';
import type { CeleryEvent } from '../../../src/client/events/types.ts';
import { createIngestor, TIMELINE_MAX } from '../../../src/dashboard/model/ingest.ts';
import { createMemoryStore } from '../../../src/dashboard/model/store-memory.ts';
import type { TaskStore } from '../../../src/dashboard/model/store.ts';
import { VECTORS_DIR } from '../../helpers/fixtures.ts';

function golden(type: string, over: Record<string, unknown> = {}): CeleryEvent {
  const { event } = JSON.parse(readFileSync(join(VECTORS_DIR, 'events', `${type}.json`), 'utf8')) as { event: Record<string, unknown> };
  const r = parseEvent({ ...event, ...over }, Date.now() / 1000);
  if (!('event' in r)) throw new Error(r.malformed);
  return r.event;
}

function counting(store: TaskStore): { puts: number[]; store: TaskStore } {
  const puts: number[] = [];
  return {
    puts,
    store: {
      ...store,
      putMany(writes) {
        puts.push(writes.length);
        store.putMany(writes);
      },
    },
  };
}

describe('dashboard ingestion', () => {
  it('folds Python Celery\'s events into one task, in one write per tick', () => {
    const { store, puts } = counting(createMemoryStore());
    const ingest = createIngestor({ store, flushMs: 10_000 });
    const id = 'aaaaaaaa-0000-4000-8000-000000000001';
    for (const type of ['task-sent', 'task-received', 'task-started', 'task-failed']) ingest.push(golden(type, { uuid: id }));
    assert.equal(ingest.pending, 4);
    ingest.flush();
    assert.deepEqual(puts, [1], 'four events, one task, one write');
    const t = store.get(id)!;
    assert.equal(t.state, 'FAILURE');
    assert.equal(t.name, 'tasks.add', 'named by task-sent');
    assert.equal(t.worker, 'pyworker@localhost');
    assert.ok(t.client && t.client !== t.worker, 'the sender is the client');
    assert.equal(t.exception, "ValueError('bad value')");
    assert.match(t.traceback!, /ValueError: bad value/);
    assert.ok(t.sent! <= t.received! && t.received! <= t.started! && t.started! <= t.finished!);
    assert.deepEqual(t.timeline.map((e) => e.type), ['task-sent', 'task-received', 'task-started', 'task-failed']);
    assert.equal(t.timeline[3]!.fields.traceback, undefined, 'large fields stay on the task, not in the timeline');
    assert.equal(t.queue, 'celery', 'the queue from task-sent');
    ingest.close();
  });

  it('a late task-received does not take a started task back, but fills in its name and args', () => {
    const store = createMemoryStore();
    const ingest = createIngestor({ store });
    const id = 'aaaaaaaa-0000-4000-8000-000000000002';
    ingest.push(golden('task-started', { uuid: id }));
    ingest.push(golden('task-received', { uuid: id, name: 'late.name', args: '(1, 2)' }));
    ingest.flush();
    const t = store.get(id)!;
    assert.equal(t.state, 'STARTED');
    assert.equal(t.name, 'late.name');
    assert.equal(t.args, '(1, 2)');
    ingest.push(golden('task-retried', { uuid: id }));
    ingest.flush();
    assert.equal(store.get(id)!.state, 'RETRY', 'RETRY always applies');
    ingest.push(golden('task-succeeded', { uuid: id, result: '3' }));
    ingest.push(golden('task-received', { uuid: id }));
    ingest.flush();
    assert.equal(store.get(id)!.state, 'SUCCESS');
    assert.equal(store.get(id)!.result, '3');
  });

  it('reports each applied event with the state before it, and the tick\'s lag', () => {
    const store = createMemoryStore();
    const seen: Array<[string, string | undefined, boolean]> = [];
    let lag = -1;
    const ingest = createIngestor({
      store,
      onApplied: (a) => seen.push([a.subject, a.before, a.finishedNow]),
      onFlushed: (f) => (lag = f.maxLagSeconds),
    });
    const id = 'aaaaaaaa-0000-4000-8000-000000000003';
    ingest.push(golden('task-received', { uuid: id }));
    ingest.push(golden('task-succeeded', { uuid: id }));
    ingest.push(golden('task-revoked', { uuid: id }));
    ingest.push(golden('worker-heartbeat'));
    ingest.flush();
    assert.deepEqual(seen, [
      ['received', undefined, false],
      ['succeeded', 'RECEIVED', true],
      ['revoked', 'SUCCESS', false],
    ]);
    assert.ok(lag >= 0 && lag < 5);
    assert.equal(ingest.stats.events, 4);
    assert.equal(ingest.stats.taskEvents, 3);
  });

  it('keeps at most TIMELINE_MAX events per task, the first and the latest', () => {
    const store = createMemoryStore();
    const ingest = createIngestor({ store, maxBatch: 50 });
    const id = 'aaaaaaaa-0000-4000-8000-000000000004';
    ingest.push(golden('task-sent', { uuid: id }));
    for (let i = 0; i < 200; i++) ingest.push(golden('task-retried', { uuid: id, exception: `E${i}` }));
    ingest.flush();
    const t = store.get(id)!;
    assert.equal(t.timeline.length, TIMELINE_MAX);
    assert.equal(t.timeline[0]!.type, 'task-sent');
    assert.equal(t.timeline.at(-1)!.fields.exception, 'E199');
  });

  it('flushes by itself after its tick', async () => {
    const store = createMemoryStore();
    const ingest = createIngestor({ store, flushMs: 20 });
    ingest.push(golden('task-received', { uuid: 'aaaaaaaa-0000-4000-8000-000000000005' }));
    assert.equal(store.size(), 0);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(store.size(), 1);
    ingest.close();
  });
});
