/**
 * Celery events built by protocol/events.ts against the events Celery 5.2.6
 * sent (test/fixtures/celery-5.2.6/events/*.json over Redis, amqp/events.json
 * over RabbitMQ): every field, its type, the key order and the exact JSON
 * text Python wrote, the routing key and the envelope.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { clearRegisteredSecrets, registerSecret } from '../../../src/config/redact.ts';
import {
  EVENT_REPR_MAX,
  buildEvent,
  encodeEventBody,
  eventGroup,
  eventMessage,
  eventRepr,
  eventRoutingKey,
  multiRoutingKey,
  roundLoadavg,
  taskEvent,
  utcOffsetHours,
  workerEvent,
  type EventRecord,
  type EventSender,
  type EventType,
  type TaskEventType,
  type WorkerEventType,
} from '../../../src/protocol/events.ts';
import { readVector } from '../../helpers/fixtures.ts';

type Ev = Record<string, unknown>;

/** Rebuild a captured event with the builders, from its own values. */
function rebuild(ev: Ev): EventRecord {
  const sender: EventSender = { hostname: ev.hostname as string, pid: ev.pid as number, utcoffset: ev.utcoffset as number };
  const type = ev.type as EventType;
  if (type.startsWith('worker-')) {
    return workerEvent(
      type as WorkerEventType,
      sender,
      ev.clock as number,
      {
        freq: ev.freq as number,
        active: ev.active as number,
        processed: ev.processed as number,
        loadavg: ev.loadavg as number[],
        sw_ident: ev.sw_ident as string,
        sw_ver: ev.sw_ver as string,
        sw_sys: ev.sw_sys as string,
      },
      ev.timestamp as number,
    );
  }
  // The type's own fields, in the order the builder's TaskEventFields names them (checked against the capture below).
  const fieldsOf: Record<TaskEventType, string[]> = {
    'task-sent': ['root_id', 'parent_id', 'name', 'args', 'kwargs', 'retries', 'eta', 'expires', 'queue', 'exchange', 'routing_key'],
    'task-received': ['name', 'args', 'kwargs', 'root_id', 'parent_id', 'retries', 'eta', 'expires'],
    'task-started': [],
    'task-succeeded': ['result', 'runtime'],
    'task-failed': ['exception', 'traceback'],
    'task-retried': ['exception', 'traceback'],
    'task-rejected': ['requeue'],
    'task-revoked': ['terminated', 'signum', 'expired'],
  };
  const fields: Ev = {};
  for (const k of fieldsOf[type as TaskEventType]) fields[k] = ev[k];
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  return taskEvent(type as TaskEventType, sender, ev.clock as number, ev.uuid as string, fields as any, ev.timestamp as number);
}

/** Python's types, as a JSON decoder sees them (a float with an integral value keeps its `.0` in the text). */
function typesOf(ev: Ev): Record<string, string> {
  return Object.fromEntries(Object.entries(ev).map(([k, v]) => [k, v === null ? 'null' : Array.isArray(v) ? 'list' : typeof v]));
}

interface EventVector {
  event_type: string;
  routing_key: string;
  batched: boolean;
  event: Ev;
  whole_message: { envelope: { body: string; 'content-type': string; 'content-encoding': string; headers: Ev; properties: { delivery_mode: number; priority: number; delivery_info: { exchange: string; routing_key: string } } }; body_decoded: Ev | Ev[] };
}

const TYPES = ['worker-online', 'worker-heartbeat', 'worker-offline', 'task-sent', 'task-received', 'task-started', 'task-succeeded', 'task-failed', 'task-retried', 'task-revoked'];

describe('Celery events over Redis (events/<type>.json)', () => {
  for (const type of TYPES) {
    it(`${type}: every field, type and key order, the JSON text, the routing key and the envelope`, () => {
      const v = readVector<EventVector>(`events/${type}.json`);
      const built = rebuild(v.event);
      assert.deepEqual(Object.keys(built), Object.keys(v.event), 'same keys in the same order');
      assert.deepEqual(built, v.event);
      assert.deepEqual(typesOf(built), typesOf(v.event));

      const env = v.whole_message.envelope;
      // The fixtures' decoded tracebacks name the capture script `capture/…` (README); the raw body kept `/srv/capture/…`.
      const pythonText = Buffer.from(env.body, 'base64').toString('utf8').replaceAll('/srv/capture/', 'capture/');
      const batch = v.whole_message.body_decoded;
      const rebuiltBody = Array.isArray(batch) ? batch.map(rebuild) : rebuild(batch);
      assert.equal(encodeEventBody(rebuiltBody), pythonText, 'the exact text Python wrote');

      const key = v.batched ? multiRoutingKey(eventGroup(type)) : eventRoutingKey(type);
      assert.equal(key, v.routing_key);
      assert.equal(key, env.properties.delivery_info.routing_key);
      const msg = eventMessage(built.hostname as string, rebuiltBody);
      assert.deepEqual(msg.headers, env.headers);
      assert.equal(msg.contentType, env['content-type']);
      assert.equal(msg.contentEncoding, env['content-encoding']);
      assert.equal(msg.properties.delivery_mode, env.properties.delivery_mode);
      assert.equal(msg.properties.priority, env.properties.priority);
      assert.equal(msg.body.toString('utf8'), pythonText);
    });
  }

  it('heartbeat floats keep their decimal point (freq 2.0, loadavg 0.5), as Python writes them', () => {
    const ev = workerEvent('worker-heartbeat', { hostname: 'n@h', pid: 1, utcoffset: 0 }, 3, { freq: 2, active: 0, processed: 1, loadavg: [1, 0.5, 0], sw_ident: 'celeriac', sw_ver: '0.1.0', sw_sys: 'Linux' }, 1795501014);
    const text = encodeEventBody(ev);
    assert.match(text, /"freq": 2\.0,/);
    assert.match(text, /"loadavg": \[1\.0, 0\.5, 0\.0\]/);
    assert.match(text, /"timestamp": 1795501014\.0,/);
    assert.deepEqual(JSON.parse(text), ev);
  });
});

describe('Celery events over RabbitMQ (amqp/events.json)', () => {
  const v = readVector<{ messages: Array<{ delivery_info: { exchange: string; routing_key: string }; properties: { content_type: string; content_encoding: string; application_headers: Ev; delivery_mode: number; priority: number }; body_bytes: { utf8: string }; body_decoded: Ev | Ev[] }> }>('amqp/events.json');
  it('has every message rebuilt to the exact bytes, routing key and properties', () => {
    assert.ok(v.messages.length >= 10);
    const seen = new Set<string>();
    for (const m of v.messages) {
      const body = Array.isArray(m.body_decoded) ? m.body_decoded.map(rebuild) : rebuild(m.body_decoded);
      const first = Array.isArray(body) ? body[0]! : body;
      for (const e of Array.isArray(body) ? body : [body]) seen.add(e.type);
      assert.equal(m.delivery_info.exchange, 'celeryev');
      assert.equal(m.delivery_info.routing_key, Array.isArray(body) ? multiRoutingKey(eventGroup(first.type)) : eventRoutingKey(first.type));
      const msg = eventMessage(first.hostname as string, body);
      assert.equal(msg.body.toString('utf8'), m.body_bytes.utf8);
      assert.equal(msg.contentType, m.properties.content_type);
      assert.equal(msg.contentEncoding, m.properties.content_encoding);
      assert.deepEqual(msg.headers, m.properties.application_headers);
      assert.equal(msg.properties.delivery_mode, m.properties.delivery_mode);
      assert.equal(msg.properties.priority, m.properties.priority);
    }
    assert.deepEqual([...seen].sort(), ['task-failed', 'task-received', 'task-sent', 'task-started', 'task-succeeded', 'worker-heartbeat', 'worker-offline', 'worker-online']);
  });
});

describe('event helpers', () => {
  it('routing keys and groups are Celery\'s', () => {
    assert.equal(eventRoutingKey('worker-heartbeat'), 'worker.heartbeat');
    assert.equal(eventRoutingKey('task-succeeded'), 'task.succeeded');
    assert.equal(eventGroup('task-sent'), 'task');
    assert.equal(eventGroup('worker-online'), 'worker');
    assert.equal(multiRoutingKey('task'), 'task.multi');
  });

  it('utcoffset is Python\'s time.timezone // 3600 (west positive, floored)', () => {
    const at = (minutesWest: number): Date => ({ getTimezoneOffset: () => minutesWest }) as Date;
    assert.equal(utcOffsetHours(at(0)), 0);
    assert.equal(utcOffsetHours(at(-60)), -1); // UTC+1
    assert.equal(utcOffsetHours(at(300)), 5); // UTC-5
    assert.equal(utcOffsetHours(at(-330)), -6); // UTC+5:30: -19800 // 3600
  });

  it('load averages are rounded up to hundredths', () => {
    assert.deepEqual(roundLoadavg([1.151, 0.97, 0.5]), [1.16, 0.97, 0.5]);
  });

  it('reprs are capped at 1024 characters and carry no secret', () => {
    const long = `(${'x'.repeat(3000)})`;
    const cut = eventRepr(long);
    assert.equal(cut.length, EVENT_REPR_MAX + 3);
    assert.ok(cut.endsWith('...'));
    assert.equal(eventRepr("{'password': 'hunter2-very-secret'}"), "{'password': '***'}");
    assert.equal(eventRepr("('redis://user:s3cr3t-pw@host:6379/0',)"), "('redis://user:***@host:6379/0',)");
    registerSecret('Zq8!vLr2#pT9wXk4');
    try {
      assert.equal(eventRepr("('Zq8!vLr2#pT9wXk4',)"), "('***',)");
    } finally {
      clearRegisteredSecrets();
    }
  });

  it('buildEvent puts the common fields first and timestamp, type last', () => {
    const ev = buildEvent('task-started', { hostname: 'n@h', pid: 7, utcoffset: -1 }, 9, { uuid: 'u' }, 1.5);
    assert.deepEqual(Object.keys(ev), ['hostname', 'utcoffset', 'pid', 'clock', 'uuid', 'timestamp', 'type']);
  });
});
