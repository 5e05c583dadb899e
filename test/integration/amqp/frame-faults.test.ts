/**
 * Issue 20 finding 2, the class: any frame-level decode failure of one
 * message dead-letters that message (with its id and the reason) and keeps
 * the connection; the messages behind it are served. RabbitMQ refuses a
 * malformed table from a publisher (541), so the faults are delivered by a
 * scripted broker through amqplib's real frame parser and Celeriac's real
 * consumer. No RabbitMQ needed.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { createAmqpBroker, DLQ_HEADERS, type AmqpBroker } from '../../../src/transport/amqp/broker.ts';
import { publishOptions } from '../../../src/transport/amqp/codec.ts';
import type { Delivery } from '../../../src/core/broker.ts';
import { JSON_SERIALIZER } from '../../../src/codec/serializers.ts';
import { resolveSettings } from '../../../src/config/options.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { buildTaskMessage } from '../../../src/protocol/task-message.ts';
import { waitFor } from '../../helpers/services.ts';
import { defs, rawHeaderFrame, startFakeBroker, type FakeBroker, type ScriptedDelivery } from './support/fake-broker.ts';

const logger = createLogger({ level: 'silent' });

/** A well-formed Celery task message as a delivery. */
function good(id: string): ScriptedDelivery {
  const m = buildTaskMessage({ task: 'tasks.add', id, args: [2, 3], kwargs: {} }, JSON_SERIALIZER);
  const o = publishOptions(m, undefined, false) as Record<string, unknown>;
  return { header: (ch) => defs.encodeProperties(defs.BasicProperties!, ch, m.body.length, o), body: m.body };
}

/** Headers-only properties: `id` = the given id, then one entry of a type RabbitMQ would refuse. */
function badTable(id: string, tail: Buffer): ScriptedDelivery {
  const idEntry = Buffer.concat([Buffer.from([2]), Buffer.from('id'), Buffer.from('S'), Buffer.from([0, 0, 0, id.length]), Buffer.from(id)]);
  const table = Buffer.concat([idEntry, tail]);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(table.length);
  const body = Buffer.from('[[1, 1], {}, {}]');
  return { header: (ch) => rawHeaderFrame(ch, body.length, Buffer.concat([Buffer.from([0x20, 0x00]), len, table])), body };
}

describe('a frame-level decode failure dead-letters one message and keeps the connection', () => {
  let fake: FakeBroker | undefined;
  let broker: AmqpBroker | undefined;
  after(async () => {
    await broker?.close();
    await fake?.close();
  });

  it('unknown field type, truncated string, properties that do not decode: each dead-lettered with id and reason; the good ones behind them are served', async () => {
    fake = await startFakeBroker([
      badTable('bad-unknown', Buffer.concat([Buffer.from([1, 0x78]), Buffer.from('Z'), Buffer.from([0, 0])])),
      good('good-1'),
      badTable('bad-truncated', Buffer.concat([Buffer.from([1, 0x78]), Buffer.from('S'), Buffer.from([0, 0, 0x10, 0])])),
      // content type flagged, nothing after the flags: amqplib's property decoder throws a RangeError
      { header: (ch) => rawHeaderFrame(ch, 2, Buffer.from([0x80, 0x00])), body: Buffer.from('[]') },
      good('good-2'),
    ]);
    broker = createAmqpBroker({ url: fake.url, logger, settings: resolveSettings({ brokerTransportOptions: { reconnectDelayMs: 50, reconnectDelayMaxMs: 500 } }) });
    const got: Delivery[] = [];
    const malformed: string[] = [];
    const errors: Error[] = [];
    const c = await broker.consume(['fq'], { prefetch: 10, onMalformed: (m) => malformed.push(`${m.id}: ${m.reason}`), onError: (e) => errors.push(e) }, (d) => got.push(d));
    await waitFor(() => got.length === 2 && malformed.length === 3, 10_000, 'two good, three malformed');
    assert.deepEqual(got.map((d) => d.message.headers.id), ['good-1', 'good-2']);
    assert.match(malformed[0]!, /^bad-unknown: malformed message: header table has an unknown field type 0x5a \(task id "bad-unknown"\)/);
    assert.match(malformed[1]!, /^bad-truncated: malformed message: header table truncated/);
    assert.match(malformed[2]!, /^undefined: malformed message: message properties do not decode/);
    await Promise.all(got.map((d) => d.ack()));
    await waitFor(() => fake!.acked.length === 5, 5000, 'all five settled');
    assert.deepEqual([...fake.acked].sort(), [1, 2, 3, 4, 5]);
    const dlq = fake.published.filter((p) => p.routingKey === 'fq.dlq');
    assert.equal(dlq.length, 3, 'three dead-letter copies');
    const reasons = dlq.map((p) => String((p.properties.headers as Record<string, unknown>)[DLQ_HEADERS.reason]));
    assert.match(reasons[0]!, /unknown field type 0x5a \(task id "bad-unknown"\)/);
    assert.deepEqual(errors, [], 'no connection loss');
    assert.equal(fake.connections, 2, 'the consumer connection and the publisher connection (dead-letter copies), no reconnect');
    assert.equal(fake.closed, 0, 'no connection closed');
    await c.cancel();
  });
});
