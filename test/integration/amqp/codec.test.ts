/**
 * AMQP basic properties against the bytes Python Celery 5.2.6 (py-amqp
 * 5.1.1) writes: every publish of client_publish_calls.json (tasks and
 * task-sent events) is re-encoded from its WireMessage with amqplib's own
 * encoder and compared byte for byte; the received messages of
 * task_messages_as_received.json decode to the same WireMessage the Redis
 * transport yields. Pure: no broker needed.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { encodeTable, publishOptions, wireMessageFrom } from '../../../src/amqp/codec.ts';
import { decodeFieldsBounded, fieldTableGuardActive, TOO_DEEP } from '../../../src/amqp/field-table.ts';
import { taskQueueDeclaration } from '../../../src/amqp/topology.ts';
import { amqpSettings } from '../../../src/amqp/options.ts';
import { amqpEndpoint } from '../../../src/amqp/connection.ts';
import { resolveSettings } from '../../../src/config/options.ts';
import { JSON_SERIALIZER } from '../../../src/codec/serializers.ts';
import { buildTaskMessage } from '../../../src/protocol/task-message.ts';
import type { WireMessage } from '../../../src/protocol/types.ts';

const FIX = new URL('../../fixtures/celery-5.2.6/amqp/', import.meta.url);
const load = <T>(name: string): T => JSON.parse(readFileSync(new URL(name, FIX), 'utf8')) as T;

// amqplib's encoder and decoder are internal modules: load them by path for a byte-level comparison.
const require = createRequire(import.meta.url);
const amqplibDir = dirname(require.resolve('amqplib'));
const defs = require(join(amqplibDir, 'lib/defs.js')) as {
  BasicProperties: number;
  encodeProperties(id: number, channel: number, size: number, fields: unknown): Buffer;
  decode(id: number, buf: Buffer): Record<string, unknown>;
};
const Args = require(join(amqplibDir, 'lib/api_args.js')) as { publish(exchange: string, rk: string, options: unknown): unknown };

/** The property bytes (flags + property list) amqplib writes for these publish options. */
function propertyBytes(exchange: string, routingKey: string, options: unknown, bodySize: number): string {
  const frame = defs.encodeProperties(defs.BasicProperties, 1, bodySize, Args.publish(exchange, routingKey, options));
  // frame header (7) + class id, weight, body size (12) … frame end (1)
  return frame.subarray(19, frame.length - 1).toString('hex');
}

interface PyProps {
  priority: number;
  content_type: string;
  content_encoding: string;
  application_headers?: Record<string, unknown>;
  correlation_id?: string;
  reply_to?: string;
  delivery_mode: number;
  expiration?: string;
}
interface PublishCall {
  exchange: string;
  routing_key: string;
  properties: PyProps;
  content_header_property_bytes_hex: string;
  body: { utf8: string };
}

function wireFromPy(p: PyProps, body: string): WireMessage {
  const properties: WireMessage['properties'] = { delivery_mode: p.delivery_mode, priority: p.priority };
  if (p.correlation_id !== undefined) properties.correlation_id = p.correlation_id;
  if (p.reply_to !== undefined) properties.reply_to = p.reply_to;
  if (p.expiration !== undefined) properties.expiration = p.expiration;
  return { headers: p.application_headers ?? {}, properties, contentType: p.content_type, contentEncoding: p.content_encoding, body: Buffer.from(body) };
}

describe('AMQP properties: byte-identical to py-amqp', () => {
  const calls = load<{ publish_calls: PublishCall[] }>('client_publish_calls.json').publish_calls;

  it(`re-encodes all ${calls.length} captured publishes (tasks and task-sent events) byte for byte`, () => {
    assert.ok(calls.length >= 14);
    for (const c of calls) {
      const m = wireFromPy(c.properties, c.body.utf8);
      const hex = propertyBytes(c.exchange, c.routing_key, publishOptions(m, undefined, false), m.body.length);
      assert.equal(hex, c.content_header_property_bytes_hex, `${c.exchange}/${c.routing_key} ${String(c.properties.application_headers?.task ?? c.properties.application_headers?.hostname)}`);
    }
  });

  it('a message built by Celeriac has the flag set and types Python writes (priority present, nulls void, ints signed 32-bit)', () => {
    const c = calls[0]!;
    const h = c.properties.application_headers!;
    const m = buildTaskMessage(
      { task: String(h.task), id: String(h.id), args: [2, 3], kwargs: {}, origin: String(h.origin), replyTo: c.properties.reply_to },
      JSON_SERIALIZER,
    );
    const hex = propertyBytes('', 'celery', publishOptions(m, undefined, true), m.body.length);
    assert.equal(hex, c.content_header_property_bytes_hex, 'same bytes as add.delay(2, 3) from Python');
  });

  it('expires → expiration in milliseconds, and the flags byte gains the expiration bit', () => {
    const m = buildTaskMessage({ task: 'tasks.add', id: '00000000-0000-4000-8000-000000000000', args: [1, 1], kwargs: {}, expires: 61_000, now: 1_000 }, JSON_SERIALIZER);
    const o = publishOptions(m, undefined, true);
    assert.equal(o.expiration, '60000');
    assert.equal(propertyBytes('', 'celery', o, m.body.length).slice(0, 4), 'fd00', 'content type/encoding, headers, delivery mode, priority, correlation id, expiration; no empty reply_to');
  });

  it('decodes the messages a consumer receives into the same headers and properties', () => {
    const received = load<{ messages: Array<{ properties: PyProps; body_bytes: { utf8: string } }> }>('task_messages_as_received.json').messages;
    for (const r of received) {
      const p = r.properties;
      const encoded = propertyBytes('', 'celery', publishOptions(wireFromPy(p, r.body_bytes.utf8), undefined, false), 0);
      const decoded = defs.decode(defs.BasicProperties, Buffer.from(encoded, 'hex'));
      const m = wireMessageFrom(decoded as never, Buffer.from(r.body_bytes.utf8));
      assert.deepEqual(m.headers, p.application_headers);
      assert.equal(m.properties.correlation_id, p.correlation_id);
      assert.equal(m.properties.reply_to, p.reply_to);
      assert.equal(m.properties.priority, p.priority);
      assert.equal(m.properties.delivery_mode, 2);
      assert.equal(m.properties.expiration, p.expiration);
      assert.equal(m.contentType, 'application/json');
      assert.equal(m.contentEncoding, 'utf-8');
    }
  });

  it('types values as py-amqp: I for 32-bit ints, l beyond, d for floats, A/F/V/t/S', () => {
    const t = encodeTable({ small: 5, neg: -7, big: 2 ** 40, f: 1.5, s: 'x', b: true, n: null, a: [1, null, 'y'], o: { k: 2 }, u: undefined });
    assert.deepEqual(t, {
      small: { '!': 'int', value: 5 },
      neg: { '!': 'int', value: -7 },
      big: { '!': 'long', value: 2 ** 40 },
      f: { '!': 'double', value: 1.5 },
      s: 'x',
      b: true,
      n: null,
      a: [{ '!': 'int', value: 1 }, null, 'y'],
      o: { k: { '!': 'int', value: 2 } },
    });
  });

  it('decoding never lets a __proto__ header reach a prototype, and refuses absurd nesting', () => {
    const headers = JSON.parse('{"__proto__": {"polluted": true}, "id": "x"}') as Record<string, unknown>;
    const m = wireMessageFrom({ headers } as never, Buffer.alloc(0));
    assert.equal(m.headers.id, 'x');
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    assert.equal(Object.getPrototypeOf(m.headers), Object.prototype);
    let deep: unknown = 1;
    for (let i = 0; i < 100; i++) deep = [deep];
    assert.throws(() => wireMessageFrom({ headers: { deep } } as never, Buffer.alloc(0)), /deeper than 64/);
  });
});

/** A header table `{h: [[[…1…]]]}` nested `depth` arrays deep, as raw field-table bytes. */
function deepTable(depth: number): Buffer {
  let inner = Buffer.from([0x49, 0, 0, 0, 1]); // I 1
  for (let i = 0; i < depth; i++) {
    const b = Buffer.alloc(5 + inner.length);
    b.write('A', 0);
    b.writeUInt32BE(inner.length, 1);
    inner.copy(b, 5);
    inner = b;
  }
  return Buffer.concat([Buffer.from([1, 0x68]), inner]);
}

describe('AMQP header decoding is depth-limited (amqplib recursion guard)', () => {
  it('the guard is installed in amqplib', () => {
    assert.equal(fieldTableGuardActive(), true);
  });

  it('decodes ordinary tables exactly as amqplib did', () => {
    const call = load<{ publish_calls: PublishCall[] }>('client_publish_calls.json').publish_calls[4]!;
    const decoded = defs.decode(defs.BasicProperties, Buffer.from(call.content_header_property_bytes_hex, 'hex'));
    assert.deepEqual(decoded.headers, call.properties.application_headers);
    const shallow = decodeFieldsBounded(deepTable(10));
    let v: unknown = shallow.h;
    for (let i = 0; i < 10; i++) v = (v as unknown[])[0];
    assert.equal(v, 1);
  });

  it('a header nested 20,000 levels deep (fits in one frame) no longer overflows the stack: it decodes to TOO_DEEP and the message is malformed', () => {
    const table = deepTable(20_000);
    assert.ok(table.length < 131_072, 'fits in a default frame');
    const flags = Buffer.from([0x20, 0x00]); // headers only
    const len = Buffer.alloc(4);
    len.writeUInt32BE(table.length);
    const props = defs.decode(defs.BasicProperties, Buffer.concat([flags, len, table]));
    let v: unknown = (props.headers as Record<string, unknown>).h;
    let depth = 0;
    while (Array.isArray(v)) {
      v = v[0];
      depth++;
    }
    assert.equal(v, TOO_DEEP);
    assert.equal(depth, 64);
    assert.throws(() => wireMessageFrom(props as never, Buffer.alloc(0)), /deeper than 64/);
  });
});

describe('AMQP topology and URLs', () => {
  it("declares task queues as Celery does: no arguments by default; x-max-priority / x-queue-type only when configured", () => {
    const plain = taskQueueDeclaration('celery', amqpSettings(resolveSettings({})));
    assert.deepEqual({ ...plain, arguments: plain.arguments }, {
      name: 'celery', durable: true, autoDelete: false, exclusive: false, arguments: {},
      exchange: { name: 'celery', type: 'direct', durable: true }, routingKey: 'celery',
    });
    assert.deepEqual(taskQueueDeclaration('q', amqpSettings(resolveSettings({ taskQueueMaxPriority: 10 }))).arguments, { 'x-max-priority': { '!': 'int', value: 10 } });
    assert.deepEqual(taskQueueDeclaration('q', amqpSettings(resolveSettings({ task_default_queue_type: 'quorum', task_queue_max_priority: 10 }))).arguments, { 'x-queue-type': 'quorum' });
    assert.throws(() => amqpSettings(resolveSettings({ taskQueueMaxPriority: 300 })), /taskQueueMaxPriority/);
    assert.throws(() => amqpSettings(resolveSettings({ taskDefaultQueueType: 'stream' as never })), /taskDefaultQueueType/);
  });

  it("reads vhost and credentials from the URL: Celery's // is vhost /, names are percent-decoded once", () => {
    const s = resolveSettings({});
    const a = amqpEndpoint('amqp://user:p%40ss%2Fword@rabbit.local:5673//', s);
    assert.equal(a.connect.vhost, encodeURIComponent('/'));
    assert.equal(a.connect.username, 'user');
    assert.equal(a.connect.password, 'p@ss/word');
    assert.equal(a.connect.port, 5673);
    assert.equal(a.tls, undefined);
    const b = amqpEndpoint('pyamqp://u:pw@h/my%25vhost', s);
    assert.equal(decodeURIComponent(b.connect.vhost!), 'my%vhost');
    assert.equal(b.display, 'h:5672/my%vhost');
    const c = amqpEndpoint('amqps://u:pw@rabbit.example.com/prod', s);
    assert.equal(c.connect.protocol, 'amqps');
    assert.equal(c.connect.port, 5671);
    assert.equal(c.tls?.rejectUnauthorized, true, 'verification on by default');
    assert.equal(c.tls?.servername, 'rabbit.example.com');
    assert.ok(!JSON.stringify(c.display).includes('pw'));
    assert.throws(() => amqpEndpoint('amqps://u:pw@h/v?ssl_cert_reqs=none', s), /insecure TLS/);
  });
});
