/**
 * Event checks: every event Celery 5.2.6 sent in the captured vectors
 * (Redis pub/sub, with task.multi groups, and RabbitMQ) is read with its
 * fields; malformed events are refused with a reason, never thrown.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { encodeMsgpack } from '../../../../src/codec/msgpack.ts';
import { parseEvent, parseEventMessage } from '../../../../src/client/events/parse.ts';
import { isKnownEvent, isTaskEvent, isWorkerEvent, TASK_EVENT_TYPES, WORKER_EVENT_TYPES, type CeleryEvent } from '../../../../src/client/events/types.ts';
import type { WireMessage } from '../../../../src/protocol/types.ts';
import { readVector } from '../../../helpers/fixtures.ts';

interface PubsubVector {
  messages: Array<{ channel: string; envelope: { body: string; 'content-type': string; 'content-encoding': string; headers: Record<string, unknown> }; body_decoded: unknown }>;
}
interface AmqpVector {
  messages: Array<{ delivery_info: { routing_key: string }; properties: { content_type: string; content_encoding: string; application_headers: Record<string, unknown> }; body_bytes: { utf8: string }; body_decoded: unknown }>;
}

function wire(body: Buffer | string, contentType = 'application/json', headers: Record<string, unknown> = {}): WireMessage {
  return { headers, properties: { delivery_mode: 1, priority: 0 }, contentType, contentEncoding: contentType === 'application/json' ? 'utf-8' : 'binary', body: Buffer.isBuffer(body) ? body : Buffer.from(body) };
}

const event = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
  hostname: 'w@h', utcoffset: 0, pid: 1, clock: 3, uuid: '2d0acf73-4aec-4c50-95cf-7026e8379ac0', timestamp: 1795501012.3553057, type: 'task-started', ...over,
});

describe('event checks against Celery 5.2.6 vectors', () => {
  for (const file of ['events/redis_pubsub_all.json', 'events/msgpack_redis_pubsub_all.json', 'events/extended_redis_pubsub_all.json']) {
    it(`reads every celeryev message of ${file}, groups included, field for field`, () => {
      const v = readVector<PubsubVector>(file);
      let n = 0;
      for (const m of v.messages.filter((x) => x.channel.includes('celeryev'))) {
        const msg = wire(Buffer.from(m.envelope.body, 'base64'), m.envelope['content-type'], m.envelope.headers);
        const r = parseEventMessage(msg, 42);
        assert.deepEqual(r.malformed, []);
        // body_decoded has the capture's paths rewritten in tracebacks: compare with the bytes as sent.
        const sent = JSON.parse(msg.body.toString('utf8')) as unknown;
        const expected = Array.isArray(sent) ? sent : [sent];
        assert.equal(expected.length, Array.isArray(m.body_decoded) ? m.body_decoded.length : 1);
        assert.equal(r.events.length, expected.length);
        r.events.forEach((ev, i) => {
          assert.deepEqual(ev, { ...(expected[i] as object), local_received: 42 });
          assert.ok(isKnownEvent(ev), ev.type);
          n++;
        });
      }
      assert.ok(n > 10);
    });
  }

  it('reads every event of the RabbitMQ capture (amqp/events.json)', () => {
    const v = readVector<AmqpVector>('amqp/events.json');
    const types = new Set<string>();
    for (const m of v.messages) {
      const r = parseEventMessage(wire(m.body_bytes.utf8, m.properties.content_type, m.properties.application_headers), 1);
      assert.deepEqual(r.malformed, []);
      for (const ev of r.events) types.add(ev.type);
    }
    assert.ok(types.has('worker-online') && types.has('worker-heartbeat') && types.has('task-succeeded'), [...types].join());
  });

  it('types each single-event vector (events/<type>.json)', () => {
    const seen = new Set<string>();
    for (const type of [...WORKER_EVENT_TYPES, ...TASK_EVENT_TYPES]) {
      if (type === 'task-rejected') continue; // not captured from Celery 5.2.6 (checked by the unit cases below)
      const v = readVector<{ event: Record<string, unknown> }>(`events/${type}.json`);
      const r = parseEvent(v.event, 1);
      assert.ok('event' in r, type);
      const ev: CeleryEvent = r.event;
      seen.add(ev.type);
      if (isWorkerEvent(ev)) {
        assert.equal(typeof ev.freq, 'number');
        assert.equal(ev.sw_ident, 'py-celery');
        assert.equal(ev.loadavg?.length, 3);
      } else {
        assert.ok(isTaskEvent(ev));
        assert.equal(typeof ev.uuid, 'string');
        if (ev.type === 'task-succeeded') assert.equal(ev.result, '5');
        if (ev.type === 'task-failed') assert.match(ev.exception ?? '', /ValueError/);
        if (ev.type === 'task-revoked') assert.equal(ev.expired, true);
      }
    }
    assert.equal(seen.size, 10);
  });

  it('task-rejected (not in the captures) is typed with its requeue flag', () => {
    const r = parseEvent(event({ type: 'task-rejected', requeue: false }), 1);
    assert.ok('event' in r && r.event.type === 'task-rejected' && r.event.requeue === false);
    assert.ok('malformed' in parseEvent(event({ type: 'task-rejected', requeue: 'no' }), 1));
  });

  it('msgpack event bodies are read too', () => {
    const r = parseEventMessage(wire(encodeMsgpack([event(), event({ type: 'task-succeeded', result: '5', runtime: 0.1 })]), 'application/x-msgpack'), 1);
    assert.deepEqual(r.malformed, []);
    assert.deepEqual(r.events.map((e) => e.type), ['task-started', 'task-succeeded']);
  });

  it('an unknown type passes through as a generic event with its base fields checked', () => {
    const r = parseEvent(event({ type: 'custom-thing', anything: { nested: [1, 2] } }), 5);
    assert.ok('event' in r);
    assert.equal(r.event.type, 'custom-thing');
    assert.deepEqual(r.event.anything, { nested: [1, 2] });
    assert.equal(isKnownEvent(r.event), false);
  });
});

describe('malformed events are refused, counted by the caller, never thrown', () => {
  const cases: Array<[string, WireMessage]> = [
    ['bad JSON', wire('{"type": "task-started", ')],
    ['not UTF-8', wire(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]))],
    ['pickle', wire(Buffer.from([0x80, 0x04, 0x95]), 'application/x-python-serialize')],
    ['yaml', wire('type: task-started', 'application/x-yaml')],
    ['a number', wire('42')],
    ['a string', wire('"worker-online"')],
    ['null', wire('null')],
    ['wrong type of hostname', wire(JSON.stringify(event({ hostname: 5 })))],
    ['timestamp as a string', wire(JSON.stringify(event({ timestamp: '1795501012' })))],
    ['missing uuid on a task event', wire(JSON.stringify(event({ uuid: undefined })))],
    ['negative processed', wire(JSON.stringify(event({ type: 'worker-heartbeat', uuid: undefined, processed: -1 })))],
    ['runtime as a string', wire(JSON.stringify(event({ type: 'task-succeeded', runtime: 'fast' })))],
    ['a huge traceback', wire(JSON.stringify(event({ type: 'task-failed', traceback: 'x'.repeat(70_000) })))],
    ['a huge unknown field', wire(JSON.stringify(event({ junk: 'x'.repeat(70_000) })))],
    ['a huge hostname', wire(JSON.stringify(event({ hostname: 'h'.repeat(2000) })))],
    ['a huge body', wire(JSON.stringify(event({ junk: Array.from({ length: 40 }, () => 'y'.repeat(30_000)) })))],
    ['__proto__', wire('{"hostname":"w","timestamp":1,"type":"worker-online","__proto__":{"polluted":true}}')],
    ['nested __proto__', wire('{"hostname":"w","timestamp":1,"type":"worker-online","x":{"__proto__":{"polluted":true}}}')],
    ['constructor.prototype', wire('{"hostname":"w","timestamp":1,"type":"worker-online","constructor":{"prototype":{"polluted":true}}}')],
    ['deep nesting', wire(`{"hostname":"w","timestamp":1,"type":"x","d":${'['.repeat(40)}${']'.repeat(40)}}`)],
    ['an integer beyond 2^53', wire('{"hostname":"w","timestamp":1,"type":"worker-online","pid":123456789012345678901}')],
    ['NaN-ish timestamp', wire('{"hostname":"w","timestamp":1e400,"type":"worker-online"}')],
  ];
  for (const [what, msg] of cases) {
    it(what, () => {
      const r = parseEventMessage(msg, 1);
      assert.equal(r.events.length, 0, JSON.stringify(r.events).slice(0, 200));
      assert.equal(r.malformed.length, 1);
      assert.ok(r.malformed[0]!.length > 0 && r.malformed[0]!.length < 300, r.malformed[0]);
      assert.equal(({} as Record<string, unknown>).polluted, undefined);
    });
  }

  it('parseEvent refuses an object with an own __proto__ key (as JSON.parse makes it)', () => {
    const r = parseEvent(JSON.parse('{"hostname":"w","timestamp":1,"type":"worker-online","__proto__":{"polluted":true}}'), 1);
    assert.ok('malformed' in r);
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  });

  it('in a task.multi group, each bad event is refused and the good ones kept', () => {
    const r = parseEventMessage(wire(JSON.stringify([event(), { type: 'task-started' }, 7, event({ type: 'task-succeeded', result: '5' })])), 1);
    assert.deepEqual(r.events.map((e) => e.type), ['task-started', 'task-succeeded']);
    assert.equal(r.malformed.length, 2);
  });

  it('a group longer than maxItems is refused whole', () => {
    const r = parseEventMessage(wire(JSON.stringify(Array.from({ length: 20 }, () => event()))), 1, { maxBytes: 1 << 20, maxDepth: 16, maxItems: 10, maxNameLength: 100, maxTextLength: 1000 });
    assert.equal(r.events.length, 0);
    assert.equal(r.malformed.length, 1);
  });
});
