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
import { encodeTable, publishOptions, wireMessageFrom } from '../../../src/transport/amqp/codec.ts';
import { decodeFieldsBounded, fieldTableGuardActive, MALFORMED, TOO_DEEP } from '../../../src/transport/amqp/field-table.ts';
import { DecodeError } from '../../../src/errors.ts';
import { taskQueueDeclaration } from '../../../src/transport/amqp/topology.ts';
import { amqpSettings } from '../../../src/transport/amqp/options.ts';
import { amqpEndpoint } from '../../../src/transport/amqp/connection.ts';
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

  it('refuses a __proto__ header (never dropped silently, never reaching a prototype), and refuses absurd nesting', () => {
    const headers = JSON.parse('{"__proto__": {"polluted": true}, "id": "x"}') as Record<string, unknown>;
    assert.throws(() => wireMessageFrom({ headers } as never, Buffer.alloc(0)), { code: 'ERR_FORBIDDEN_KEY' });
    assert.throws(() => wireMessageFrom({ headers: { id: 'x', nested: JSON.parse('{"__proto__": 1}') } } as never, Buffer.alloc(0)), { code: 'ERR_FORBIDDEN_KEY' });
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
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

/** Raw field-table entries: key, then the type tag and its bytes. */
function entry(key: string, tag: string, value: Buffer = Buffer.alloc(0)): Buffer {
  return Buffer.concat([Buffer.from([key.length]), Buffer.from(key), Buffer.from(tag), value]);
}
const be = (bytes: number, write: (b: Buffer) => void): Buffer => {
  const b = Buffer.alloc(bytes);
  write(b);
  return b;
};
const longStr = (s: string): Buffer => Buffer.concat([be(4, (b) => b.writeUInt32BE(Buffer.byteLength(s))), Buffer.from(s)]);
/** Basic properties with only the headers flag, holding this table. */
const headersOnly = (table: Buffer): Buffer => Buffer.concat([Buffer.from([0x20, 0x00]), be(4, (b) => b.writeUInt32BE(table.length)), table]);

describe('AMQP header tables: every field type RabbitMQ and py-amqp send decodes; a bad one never throws in the frame parser', () => {
  it("py-amqp's L (signed 64-bit, written for every int beyond ±2^31) decodes; beyond ±2^53 exactly, as bigint", () => {
    const table = Buffer.concat([
      entry('id', 'S', longStr('t-1')),
      entry('big', 'L', be(8, (b) => b.writeBigInt64BE(2n ** 31n + 1n))),
      entry('huge', 'L', be(8, (b) => b.writeBigInt64BE(2n ** 63n - 1n))),
      entry('neg', 'L', be(8, (b) => b.writeBigInt64BE(-(2n ** 63n)))),
      entry('l', 'l', be(8, (b) => b.writeBigInt64BE(-5n))),
    ]);
    const props = defs.decode(defs.BasicProperties, headersOnly(table));
    const m = wireMessageFrom(props as never, Buffer.alloc(0));
    assert.deepEqual(m.headers, { id: 't-1', big: 2 ** 31 + 1, huge: 2n ** 63n - 1n, neg: -(2n ** 63n), l: -5 });
    // and they go out again exactly (amqplib writes l, which RabbitMQ and py-amqp read as signed 64-bit)
    assert.deepEqual(encodeTable({ huge: 2n ** 63n - 1n }), { huge: { '!': 'long', value: 2n ** 63n - 1n } });
    assert.throws(() => encodeTable({ wider: 2n ** 63n }), /does not fit in a signed 64-bit/);
  });

  it("decodes every type of RabbitMQ's table parser: S T b B s u I i d f l L t D F A x V", () => {
    const table = Buffer.concat([
      entry('S', 'S', longStr('Zoë')),
      entry('T', 'T', be(8, (b) => b.writeBigUInt64BE(1_700_000_000n))),
      entry('b', 'b', Buffer.from([0xff])),
      entry('B', 'B', Buffer.from([0xff])),
      entry('s', 's', be(2, (b) => b.writeInt16BE(-2))),
      entry('u', 'u', be(2, (b) => b.writeUInt16BE(65535))),
      entry('I', 'I', be(4, (b) => b.writeInt32BE(-3))),
      entry('i', 'i', be(4, (b) => b.writeUInt32BE(4294967295))),
      entry('d', 'd', be(8, (b) => b.writeDoubleBE(1.5))),
      entry('f', 'f', be(4, (b) => b.writeFloatBE(0.5))),
      entry('l', 'l', be(8, (b) => b.writeBigInt64BE(9n))),
      entry('L', 'L', be(8, (b) => b.writeBigInt64BE(-9n))),
      entry('t', 't', Buffer.from([1])),
      // py-amqp writes a Decimal's digits signed: Decimal('-1.5') → places 1, digits −15
      entry('D', 'D', Buffer.concat([Buffer.from([1]), be(4, (b) => b.writeInt32BE(-15))])),
      entry('F', 'F', (() => { const t = entry('k', 'V'); return Buffer.concat([be(4, (b) => b.writeUInt32BE(t.length)), t]); })()),
      entry('A', 'A', (() => { const a = Buffer.concat([Buffer.from('I'), be(4, (b) => b.writeInt32BE(1)), Buffer.from('V')]); return Buffer.concat([be(4, (b) => b.writeUInt32BE(a.length)), a]); })()),
      entry('x', 'x', longStr('raw')),
      entry('V', 'V'),
    ]);
    const m = wireMessageFrom(defs.decode(defs.BasicProperties, headersOnly(table)) as never, Buffer.alloc(0));
    assert.deepEqual(m.headers, { S: 'Zoë', T: 1_700_000_000, b: -1, B: 255, s: -2, u: 65535, I: -3, i: 4294967295, d: 1.5, f: 0.5, l: 9, L: -9, t: true, D: -1.5, F: { k: null }, A: [1, null], x: 'raw', V: null });
  });

  it('an unknown type or a length running past the table marks the headers (keeping what decoded before) instead of throwing', () => {
    const id = entry('id', 'S', longStr('abc-123'));
    const bad: Array<[string, Buffer, RegExp]> = [
      ['unknown type Z', Buffer.concat([id, entry('x', 'Z', Buffer.from([0, 0]))]), /unknown field type 0x5a/],
      ["py-amqp's U (RabbitMQ refuses it)", Buffer.concat([id, entry('x', 'U', Buffer.from([0, 1]))]), /unknown field type 0x55/],
      ['string longer than the table', Buffer.concat([id, entry('x', 'S', be(4, (b) => b.writeUInt32BE(1000)))]), /truncated/],
      ['key longer than the table', Buffer.concat([id, Buffer.from([200, 0x61])]), /truncated/],
      ['array element past the array', Buffer.concat([id, entry('a', 'A', Buffer.concat([be(4, (b) => b.writeUInt32BE(2)), Buffer.from('I'), Buffer.from([0, 0, 0, 1])]))]), /truncated|past the array/],
      ['nested table with a bad type', Buffer.concat([id, entry('F', 'F', Buffer.concat([be(4, (b) => b.writeUInt32BE(3)), Buffer.from([1, 0x6b, 0x3f])]))]), /unknown field type 0x3f/],
    ];
    for (const [name, table, re] of bad) {
      const props = defs.decode(defs.BasicProperties, headersOnly(table)) as { headers: Record<string | symbol, unknown> };
      assert.match(String(props.headers[MALFORMED]), re, name);
      assert.equal(props.headers.id, 'abc-123', `${name}: the id decoded before the fault is kept`);
      assert.throws(() => wireMessageFrom(props as never, Buffer.alloc(0)), (e: unknown) => e instanceof DecodeError && re.test(e.reason) && /task id "abc-123"/.test(e.reason), name);
    }
    assert.equal((decodeFieldsBounded(Buffer.concat([id, entry('x', 'Z')])) as Record<symbol, unknown>)[MALFORMED] !== undefined, true);
  });

  it('basic properties that do not decode at all (a flagged content type missing) become a marked message, not a frame error', () => {
    const props = defs.decode(defs.BasicProperties, Buffer.from([0x80, 0x00])) as { headers: Record<string | symbol, unknown> };
    assert.match(String(props.headers[MALFORMED]), /message properties do not decode/);
    assert.throws(() => wireMessageFrom(props as never, Buffer.alloc(0)), /message properties do not decode/);
    // method frames come from the broker: their faults still surface
    assert.throws(() => defs.decode(0x000a000a, Buffer.from([0])));
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
    assert.deepEqual(taskQueueDeclaration('q', amqpSettings(resolveSettings({ task_default_queue_type: 'quorum' }))).arguments, { 'x-queue-type': 'quorum' });
    // Quorum queues have no priorities: refused, not silently dropped (issue 22).
    assert.throws(() => amqpSettings(resolveSettings({ task_default_queue_type: 'quorum', task_queue_max_priority: 10 })), /quorum queues have no message priorities/);
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
