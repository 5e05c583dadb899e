/**
 * The worker's events (worker/events.ts) and the dispatcher under them
 * (observability/event-dispatcher.ts), on a broker that records its
 * broadcasts: Celery's buffering into task.multi (24 at most, held for a
 * short window), batches through broadcastMany, the Lamport clock, the switches, the heartbeat, and each task
 * event's fields from a message Celery 5.2.6 sent.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULT_DECODE_LIMITS } from '../../../src/codec/limits.ts';
import { decodeByContentType } from '../../../src/codec/serializers.ts';
import type { Broker, Exchange } from '../../../src/core/broker.ts';
import { EventDispatcher, LamportClock } from '../../../src/observability/event-dispatcher.ts';
import { createLogger, type Logger } from '../../../src/observability/logging.ts';
import { parseTaskMessage } from '../../../src/protocol/task-message.ts';
import type { WireMessage } from '../../../src/protocol/types.ts';
import { decodeRedisEnvelope } from '../../../src/transport/redis/envelope.ts';
import { WorkerEvents, exceptionRepr } from '../../../src/worker/events.ts';
import { readVector } from '../../helpers/fixtures.ts';

type Sent = { exchange: Exchange; key: string; message: WireMessage; body: unknown };

function recordingBroker(fail = false): { broker: Broker; sent: Sent[] } {
  const sent: Sent[] = [];
  const broker = {
    broadcast: async (exchange: Exchange, key: string, message: WireMessage) => {
      if (fail) throw new Error('NOPERM');
      sent.push({ exchange, key, message, body: JSON.parse(message.body.toString('utf8')) });
    },
  } as unknown as Broker;
  return { broker, sent };
}

/** A broker with `broadcastMany`: records each call's batch (one round trip each). */
function batchingBroker(fail = false): { broker: Broker; batches: Sent[][]; singles: number } {
  const rec = { broker: undefined as unknown as Broker, batches: [] as Sent[][], singles: 0 };
  const record = (exchange: Exchange, key: string, message: WireMessage): Sent => ({ exchange, key, message, body: JSON.parse(message.body.toString('utf8')) });
  rec.broker = {
    broadcast: async (exchange: Exchange, key: string, message: WireMessage) => {
      rec.singles++;
      if (fail) throw new Error('NOPERM');
      rec.batches.push([record(exchange, key, message)]);
    },
    broadcastMany: async (exchange: Exchange, items: ReadonlyArray<{ routingKey: string; message: WireMessage }>) => {
      if (fail) throw new Error('NOPERM');
      rec.batches.push(items.map((i) => record(exchange, i.routingKey, i.message)));
    },
  } as unknown as Broker;
  return rec;
}

/** A logger that counts its warn and debug lines. */
function countingLogger(): { logger: Logger; warn: unknown[]; debug: unknown[] } {
  const c = { warn: [] as unknown[], debug: [] as unknown[], logger: undefined as unknown as Logger };
  c.logger = { warn: (o: unknown) => c.warn.push(o), debug: (o: unknown) => c.debug.push(o), info: () => undefined, error: () => undefined } as unknown as Logger;
  return c;
}

const shape = (batch: Sent[]): Array<[string, number | string]> => batch.map((s) => [s.key, Array.isArray(s.body) ? s.body.length : (s.body as { type: string }).type]);

const logger = createLogger({ level: 'silent' });
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));
const ACCEPT = new Set(['application/json']);

function vectorRequest(file: string) {
  const v = readVector<{ redis_list_entries: Array<{ raw: string }> }>(file);
  const { message } = decodeRedisEnvelope(v.redis_list_entries[0]!.raw, DEFAULT_DECODE_LIMITS);
  return parseTaskMessage(message, (m) => decodeByContentType(m.body, m.contentType, ACCEPT, DEFAULT_DECODE_LIMITS));
}

describe('EventDispatcher', () => {
  it('buffers task events into task.multi lists of 24: a full one goes next turn, the rest when the window ends', async () => {
    const { broker, sent } = recordingBroker();
    const d = new EventDispatcher({ broker, hostname: 'n@h', logger, taskEvents: true, bufferTasks: true, flushWindowMs: 40 });
    for (let i = 0; i < 30; i++) d.send('task-started', { uuid: `u${i}` });
    assert.equal(sent.length, 0, 'nothing inside the turn');
    await tick();
    assert.deepEqual(sent.map((s) => [s.key, (s.body as unknown[]).length]), [['task.multi', 24]]);
    await new Promise((r) => setTimeout(r, 10));
    assert.equal(sent.length, 1, 'an open list waits for the window');
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(sent.map((s) => [s.key, (s.body as unknown[]).length]), [['task.multi', 24], ['task.multi', 6]]);
    assert.equal(sent[0]!.exchange.name, 'celeryev');
    assert.equal(sent[0]!.exchange.type, 'topic');
    const clocks = sent.flatMap((s) => (s.body as Array<{ clock: number }>).map((e) => e.clock));
    assert.deepEqual(clocks, Array.from({ length: 30 }, (_, i) => i + 1));
  });

  it('events of several turns within the window share one list; flushWindowMs 0 flushes each turn', async () => {
    const { broker, sent } = recordingBroker();
    const d = new EventDispatcher({ broker, hostname: 'n@h', logger, taskEvents: true, bufferTasks: true, flushWindowMs: 40 });
    for (let i = 0; i < 3; i++) {
      d.send('task-received', { uuid: `u${i}` });
      d.send('task-started', {}, `u${i}`);
      await tick();
    }
    await new Promise((r) => setTimeout(r, 60));
    assert.deepEqual(sent.map((s) => [s.key, (s.body as unknown[]).length]), [['task.multi', 6]]);
    const e = new EventDispatcher({ broker, hostname: 'n@h', logger, taskEvents: true, bufferTasks: true, flushWindowMs: 0 });
    e.send('task-received', { uuid: 'x' });
    await tick();
    e.send('task-started', {}, 'x');
    await tick();
    assert.deepEqual(sent.slice(1).map((s) => [s.key, (s.body as unknown[]).length]), [['task.multi', 1], ['task.multi', 1]]);
  });

  it('full lists of one turn go out in one broadcastMany, in order; a worker event goes at once behind the task events before it', async () => {
    const rec = batchingBroker();
    const d = new EventDispatcher({ broker: rec.broker, hostname: 'n@h', logger, taskEvents: true, bufferTasks: true, flushWindowMs: 1000 });
    for (let i = 0; i < 50; i++) d.send('task-received', { uuid: `u${i}` });
    await tick();
    assert.deepEqual(rec.batches.map(shape), [[['task.multi', 24], ['task.multi', 24]]], 'two full lists, one round trip');
    d.send('task-started', {}, 'u0');
    d.send('worker-heartbeat', { freq: 2 });
    assert.deepEqual(rec.batches.slice(1).map(shape), [[['task.multi', 3], ['worker.heartbeat', 'worker-heartbeat']]], 'the heartbeat is not held');
    const events = rec.batches.flatMap((b) => b.flatMap((s) => (Array.isArray(s.body) ? s.body : [s.body]) as Array<{ clock: number; type: string }>));
    assert.deepEqual(events.map((e) => e.clock), Array.from({ length: 52 }, (_, i) => i + 1), 'sent in clock order');
    assert.equal(rec.singles, 0);
  });

  it('close() sends what the window still holds, then nothing more', async () => {
    const rec = batchingBroker();
    const d = new EventDispatcher({ broker: rec.broker, hostname: 'n@h', logger, taskEvents: true, bufferTasks: true, flushWindowMs: 60_000 });
    d.send('task-received', { uuid: 'a' });
    d.send('task-succeeded', { result: 'None', runtime: 0.5 }, 'a');
    await d.close();
    assert.deepEqual(rec.batches.map(shape), [[['task.multi', 2]]]);
    d.send('task-received', { uuid: 'b' });
    await tick();
    assert.equal(rec.batches.length, 1);
  });

  it('a failed batch is logged once (at warn once, then debug) and dropped without throwing', async () => {
    for (const many of [true, false]) {
      const rec = many ? batchingBroker(true) : { ...recordingBroker(true), batches: [] };
      const c = countingLogger();
      const d = new EventDispatcher({ broker: rec.broker, hostname: 'n@h', logger: c.logger, taskEvents: true, bufferTasks: true, flushWindowMs: 1000 });
      for (let i = 0; i < 30; i++) d.send('task-received', { uuid: `u${i}` });
      d.send('worker-heartbeat', { freq: 2 });
      await d.settled();
      assert.equal(c.warn.length, 1, 'one warning for the batch');
      assert.equal((c.warn[0] as { messages: number }).messages, 3);
      d.send('worker-heartbeat', { freq: 2 });
      await d.close();
      assert.deepEqual([c.warn.length, c.debug.length], [1, 1], 'later failures at debug');
    }
  });

  it('sends worker events at once under their own key; task events not at all while off', async () => {
    const { broker, sent } = recordingBroker();
    const d = new EventDispatcher({ broker, hostname: 'n@h', logger, bufferTasks: true });
    d.send('task-received', { uuid: 'x' });
    d.send('worker-heartbeat', { freq: 2 });
    await tick();
    assert.deepEqual(sent.map((s) => s.key), ['worker.heartbeat']);
    d.setTaskEvents(true);
    d.send('task-received', { uuid: 'y' });
    await d.settled();
    assert.deepEqual(sent.map((s) => s.key), ['worker.heartbeat', 'task.multi']);
    assert.equal((sent[0]!.body as { clock: number }).clock, 1, 'an event not sent does not move the clock');
  });

  it('a client dispatcher (no buffering) sends task-sent alone under task.sent', async () => {
    const { broker, sent } = recordingBroker();
    const d = new EventDispatcher({ broker, hostname: 'gen1@h', logger, taskEvents: true });
    d.send('task-sent', { uuid: 'z' });
    await tick();
    assert.equal(sent[0]!.key, 'task.sent');
    assert.equal((sent[0]!.body as { type: string }).type, 'task-sent');
  });

  it('a failed publish is dropped without throwing', async () => {
    const { broker } = recordingBroker(true);
    const d = new EventDispatcher({ broker, hostname: 'n@h', logger, taskEvents: true });
    d.send('worker-online', {});
    await d.close();
    d.send('worker-offline', {}); // after close: nothing
  });

  it('the Lamport clock forwards and adjusts as Celery\'s', () => {
    const c = new LamportClock();
    assert.equal(c.forward(), 1);
    assert.equal(c.adjust(10), 11);
    assert.equal(c.adjust(3), 12);
  });
});

describe('WorkerEvents', () => {
  it('task-received from a message Celery sent: the fields of Celery\'s own task-received for it', async () => {
    const { broker, sent } = recordingBroker();
    const ev = new WorkerEvents({ broker, hostname: 'pyworker@localhost', logger, taskEvents: true, heartbeat: false });
    const req = vectorRequest('redis/task_countdown_expires.json');
    ev.received(req);
    await ev.stop();
    const got = (sent[0]!.body as Array<Record<string, unknown>>)[0]!;
    const celery = readVector<{ messages: Array<{ body_decoded: unknown }> }>('events/redis_pubsub_all.json')
      .messages.flatMap((m) => (Array.isArray(m.body_decoded) ? m.body_decoded : [m.body_decoded]) as Array<Record<string, unknown>>)
      .find((e) => e.type === 'task-received' && e.uuid === req.id)!;
    assert.ok(celery, 'the capture has it');
    const strip = ({ clock: _c, pid: _p, timestamp: _t, ...rest }: Record<string, unknown>) => rest;
    assert.deepEqual(strip(got), strip(celery));
    assert.deepEqual(Object.keys(got), Object.keys(celery));
  });

  it('outcome events carry Celery\'s fields', async () => {
    const { broker, sent } = recordingBroker();
    const ev = new WorkerEvents({ broker, hostname: 'n@h', logger, taskEvents: true, heartbeat: false });
    const req = vectorRequest('redis/task_add_delay.json');
    ev.started(req);
    ev.succeeded(req, 5, 15.4);
    ev.failed(req, { exc_type: 'ValueError', exc_message: ['bad value'], exc_module: 'builtins' }, 'Traceback …');
    ev.retried(req, { exc_type: 'ValueError', exc_message: ['transient'], exc_module: 'builtins' }, null);
    ev.rejected(req, true);
    ev.revoked(req, { terminated: true, signum: 15 });
    ev.notRegistered({ ...req, task: 'tasks.nope' });
    await ev.stop();
    const events = sent.flatMap((s) => s.body as Array<Record<string, unknown>>);
    const pick = (e: Record<string, unknown>) => {
      const { hostname: _h, utcoffset: _u, pid: _p, clock: _c, timestamp: _t, ...rest } = e;
      return rest;
    };
    assert.deepEqual(events.map(pick), [
      { uuid: req.id, type: 'task-started' },
      { uuid: req.id, result: '5', runtime: 0.0154, type: 'task-succeeded' },
      { uuid: req.id, exception: "ValueError('bad value')", traceback: 'Traceback …', type: 'task-failed' },
      { uuid: req.id, exception: "ValueError('transient')", traceback: '', type: 'task-retried' },
      { uuid: req.id, requeue: true, type: 'task-rejected' },
      { uuid: req.id, terminated: true, signum: 15, expired: false, type: 'task-revoked' },
      { uuid: req.id, exception: "NotRegistered('tasks.nope')", type: 'task-failed' },
    ]);
  });

  it('a result or exception repr carries no secret', async () => {
    const { broker, sent } = recordingBroker();
    const ev = new WorkerEvents({ broker, hostname: 'n@h', logger, taskEvents: true, heartbeat: false });
    const req = vectorRequest('redis/task_add_delay.json');
    ev.succeeded(req, { password: 'pw-hunter2-long', url: 'redis://u:s3cr3t-xyz@db:6379/0' }, 1);
    ev.failed(req, { exc_type: 'Error', exc_message: ['token=abcdef123456'], exc_module: 'builtins' }, 'at connect redis://u:s3cr3t-xyz@db');
    await ev.stop();
    const text = sent.map((s) => s.message.body.toString()).join('');
    assert.doesNotMatch(text, /hunter2|s3cr3t|abcdef123456/);
  });

  it('worker-online, heartbeats every interval, worker-offline', async () => {
    const { broker, sent } = recordingBroker();
    const ev = new WorkerEvents({ broker, hostname: 'n@h', logger, taskEvents: false, heartbeatIntervalS: 0.05, status: () => ({ active: 1, processed: 7 }) });
    ev.start();
    await new Promise((r) => setTimeout(r, 130));
    await ev.stop();
    const types = sent.map((s) => (s.body as { type: string }).type);
    assert.equal(types[0], 'worker-online');
    assert.equal(types.at(-1), 'worker-offline');
    assert.ok(types.filter((t) => t === 'worker-heartbeat').length >= 2);
    const hb = sent[1]!.body as Record<string, unknown>;
    assert.equal(hb.freq, 0.05);
    assert.equal(hb.active, 1);
    assert.equal(hb.processed, 7);
    assert.equal((hb.loadavg as number[]).length, 3);
    assert.equal(hb.sw_ident, 'celeriac');
    assert.match(hb.sw_ver as string, /^\d+\.\d+\.\d+/);
    assert.equal(sent[1]!.message.headers.hostname, 'n@h');
    const n = sent.length;
    await new Promise((r) => setTimeout(r, 80));
    assert.equal(sent.length, n, 'nothing after stop');
  });

  it('exceptionRepr is Python\'s repr of the exception', () => {
    assert.equal(exceptionRepr({ exc_type: 'ValueError', exc_message: [], exc_module: 'builtins' }), 'ValueError()');
    assert.equal(exceptionRepr({ exc_type: 'KeyError', exc_message: ['a', 1], exc_module: 'builtins' }), "KeyError('a', 1)");
  });
});
