/**
 * The worker's events (worker/events.ts) and the dispatcher under them
 * (observability/event-dispatcher.ts), on a broker that records its
 * broadcasts: Celery's buffering into task.multi (24 at most, or the end of
 * this turn), the Lamport clock, the switches, the heartbeat, and each task
 * event's fields from a message Celery 5.2.6 sent.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULT_DECODE_LIMITS } from '../../../src/codec/limits.ts';
import { decodeByContentType } from '../../../src/codec/serializers.ts';
import type { Broker, Exchange } from '../../../src/core/broker.ts';
import { EventDispatcher, LamportClock } from '../../../src/observability/event-dispatcher.ts';
import { createLogger } from '../../../src/observability/logging.ts';
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

const logger = createLogger({ level: 'silent' });
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));
const ACCEPT = new Set(['application/json']);

function vectorRequest(file: string) {
  const v = readVector<{ redis_list_entries: Array<{ raw: string }> }>(file);
  const { message } = decodeRedisEnvelope(v.redis_list_entries[0]!.raw, DEFAULT_DECODE_LIMITS);
  return parseTaskMessage(message, (m) => decodeByContentType(m.body, m.contentType, ACCEPT, DEFAULT_DECODE_LIMITS));
}

describe('EventDispatcher', () => {
  it('buffers task events of one turn into one task.multi list, and publishes at 24', async () => {
    const { broker, sent } = recordingBroker();
    const d = new EventDispatcher({ broker, hostname: 'n@h', logger, taskEvents: true, bufferTasks: true });
    for (let i = 0; i < 30; i++) d.send('task-started', { uuid: `u${i}` });
    await tick();
    await tick();
    assert.deepEqual(sent.map((s) => [s.key, (s.body as unknown[]).length]), [['task.multi', 24], ['task.multi', 6]]);
    assert.equal(sent[0]!.exchange.name, 'celeryev');
    assert.equal(sent[0]!.exchange.type, 'topic');
    const clocks = sent.flatMap((s) => (s.body as Array<{ clock: number }>).map((e) => e.clock));
    assert.deepEqual(clocks, Array.from({ length: 30 }, (_, i) => i + 1));
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
    await tick();
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
