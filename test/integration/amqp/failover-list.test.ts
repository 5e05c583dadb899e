/**
 * Celery's broker failover list (`amqp://a//;amqp://b//`, issue 22): the
 * first node is a TCP relay to the shared RabbitMQ that the test cuts; the
 * publisher and a consumer must move to the next node of the list and go
 * on — every confirmed send consumed, none lost. (A real three-node cluster
 * with quorum queues is not started here: see the report of issue 22.)
 */
import assert from 'node:assert/strict';
import { createServer, connect as tcpConnect, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { createAmqpBroker } from '../../../src/transport/amqp/broker.ts';
import type { Delivery } from '../../../src/core/broker.ts';
import { JSON_SERIALIZER } from '../../../src/codec/serializers.ts';
import { resolveSettings } from '../../../src/config/options.ts';
import { evaluatePolicy } from '../../../src/config/policy.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { newId } from '../../../src/protocol/ids.ts';
import { buildTaskMessage } from '../../../src/protocol/task-message.ts';
import { requireService, sleep, waitFor } from '../../helpers/services.ts';
import { createTestVhost, hasRabbitmq, type TestVhost } from './support/rabbit.ts';

const ready = hasRabbitmq();

/** A relay 127.0.0.1:<port> → 127.0.0.1:5672 that `cut()` closes with every connection through it. */
async function relay(): Promise<{ port: number; cut: () => void }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((c) => {
    const up = tcpConnect(5672, '127.0.0.1');
    sockets.add(c).add(up);
    c.pipe(up).pipe(c);
    const drop = (): void => {
      c.destroy();
      up.destroy();
    };
    c.on('error', drop).on('close', drop);
    up.on('error', drop).on('close', drop);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    cut: () => {
      server.close();
      for (const s of sockets) s.destroy();
    },
  };
}

describe('amqp failover list', () => {
  let vh: TestVhost;
  before(async () => {
    if (ready) vh = await createTestVhost('failover');
  });
  after(async () => {
    if (ready) await vh.delete();
  });

  it('the policy judges every node of the list', () => {
    const strong = 'tR4vQ9zLm2Xw8KpNa7Yc';
    const r = evaluatePolicy({ mode: 'production', brokerUrl: `amqps://w:${strong}@a.internal//;amqp://w:${strong}@b.internal//`, acceptContent: ['json'], taskSerializer: 'json' });
    assert.deepEqual(r.refusals.map((f) => `${f.id} ${f.message.includes('b.internal') ? 'b' : 'a'}`), ['CEL-003 b']);
  });

  it('publisher and consumer move to the next node when the first is cut, and nothing confirmed is lost', async (t) => {
    if (!requireService(t, ready, 'RabbitMQ')) return;
    const r = await relay();
    const url = `${vh.url({ port: r.port })};${vh.url()}`;
    const broker = createAmqpBroker({
      url, logger: createLogger({ level: 'silent' }),
      settings: resolveSettings({ brokerTransportOptions: { reconnectDelayMs: 50, reconnectDelayMaxMs: 500 }, taskAcksLate: true }),
    });
    const queue = `fo-${newId().slice(0, 8)}`;
    const got = new Set<string>();
    let deliveries = 0;
    try {
      const consumer = await broker.consume([queue], { prefetch: 20 }, (d: Delivery) => {
        deliveries++;
        got.add(d.message.headers.id as string);
        void d.ack().catch(() => undefined);
      });
      const confirmed: string[] = [];
      const send = async (i: number): Promise<void> => {
        const m = buildTaskMessage({ task: 't.n', id: `m-${i}`, args: [i], kwargs: {} }, JSON_SERIALIZER);
        for (let attempt = 0; attempt < 50; attempt++) {
          try {
            await broker.publish(queue, m);
            confirmed.push(`m-${i}`);
            return;
          } catch {
            await sleep(100);
          }
        }
      };
      for (let i = 0; i < 200; i++) await send(i);
      r.cut();
      for (let i = 200; i < 400; i++) await send(i);
      assert.equal(confirmed.length, 400);
      await waitFor(() => confirmed.every((id) => got.has(id)), 20_000, 'every confirmed send consumed after the failover');
      t.diagnostic(`400 confirmed, ${got.size} distinct consumed, ${deliveries - got.size} redelivered`);
      await consumer.cancel();
    } finally {
      await broker.close();
      r.cut();
    }
  });
});
