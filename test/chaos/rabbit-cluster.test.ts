/**
 * A three-node RabbitMQ cluster started by the test (own node names, ports,
 * data directories, one shared cookie), quorum task queues, and Celery's
 * failover list of the three nodes (issue 22). A consumer and a publisher
 * stream tasks; the node both are connected to is SIGKILLed mid-run. Every
 * confirmed send must be consumed (0 lost), and duplicates stay within the
 * in-flight bound (the consumer's prefetch window).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { createAmqpBroker } from '../../src/transport/amqp/broker.ts';
import type { Delivery } from '../../src/core/broker.ts';
import { JSON_SERIALIZER } from '../../src/codec/serializers.ts';
import { resolveSettings } from '../../src/config/options.ts';
import { createLogger } from '../../src/observability/logging.ts';
import { buildTaskMessage } from '../../src/protocol/task-message.ts';
import { requireService, sleep, waitFor } from '../helpers/services.ts';
import { canStartPrivateNode, createTestVhost, ctl, listQueues, startPrivateNode, type PrivateNode } from '../integration/amqp/support/rabbit.ts';

const TASKS = Number(process.env.CELERIAC_CLUSTER_TASKS ?? 2000);
const PREFETCH = 50;
const trace = process.env.CELERIAC_TRACE === '1' ? (m: string) => console.error(`[cluster] ${new Date().toISOString()} ${m}`) : () => undefined;

describe('rabbitmq cluster: a node killed mid-run', { timeout: 240_000 }, () => {
  const nodes: PrivateNode[] = [];
  after(async () => {
    await Promise.allSettled(nodes.map((n) => n.destroy()));
  });

  it(`${TASKS} tasks on quorum queues, the connected node SIGKILLed: 0 lost, duplicates ≤ prefetch`, async (t) => {
    if (!requireService(t, canStartPrivateNode(), 'rabbitmq-server')) return;
    const t0 = Date.now();
    const cookie = randomBytes(20).toString('hex').toUpperCase();
    for (let i = 0; i < 3; i++) nodes.push(await startPrivateNode({ cookie }));
    for (const n of nodes.slice(1)) {
      await ctl(['stop_app'], { node: n });
      await ctl(['join_cluster', nodes[0]!.nodename], { node: n });
      await ctl(['start_app'], { node: n });
    }
    const status = JSON.parse(await ctl(['cluster_status', '--formatter', 'json'], { node: nodes[0]! })) as { running_nodes: string[] };
    assert.equal(status.running_nodes.length, 3);
    const clusterMs = Date.now() - t0;
    trace(`cluster up in ${clusterMs} ms`);
    const vh = await createTestVhost('cluster', nodes[0]);
    const url = nodes.map((n) => vh.url({ port: n.port })).join(';');
    const settings = resolveSettings({ taskDefaultQueueType: 'quorum', brokerTransportOptions: { reconnectDelayMs: 50, reconnectDelayMaxMs: 500 }, brokerPublishTimeout: 20 });
    const logger = createLogger({ level: process.env.CELERIAC_TRACE === '1' ? 'info' : 'silent' });
    const producer = createAmqpBroker({ url, settings, logger });
    const worker = createAmqpBroker({ url, settings, logger });
    const queue = `ha-${randomBytes(3).toString('hex')}`;
    const got = new Map<string, number>();
    try {
      await producer.publish(queue, buildTaskMessage({ task: 't.n', id: 'warm-up', args: [], kwargs: {} }, JSON_SERIALIZER));
      assert.equal((await listQueues(vh.vhost, nodes[1])).find((q) => q.name === queue)?.type, 'quorum');
      const consumer = await worker.consume([queue], { prefetch: PREFETCH }, (d: Delivery) => {
        const id = d.message.headers.id as string;
        got.set(id, (got.get(id) ?? 0) + 1);
        // Acks a little later, so that a window of deliveries is in flight when the node dies.
        setTimeout(() => void d.ack().catch(() => undefined), 5);
      });
      trace('consuming');
      const confirmed = new Set<string>(['warm-up']);
      let failures = 0;
      const send = async (i: number): Promise<void> => {
        const m = buildTaskMessage({ task: 't.n', id: `m-${i}`, args: [i], kwargs: {} }, JSON_SERIALIZER);
        // A quorum queue whose leader died refuses sends (basic.nack) until the survivors elect another.
        const until = Date.now() + 60_000;
        for (;;) {
          try {
            await producer.publish(queue, m);
            confirmed.add(`m-${i}`);
            return;
          } catch (err) {
            failures++;
            if (failures % 50 === 1) trace(`send m-${i} failed: ${(err as Error).message}`);
            if (Date.now() > until) return;
            await sleep(250);
          }
        }
      };
      let killedAt = 0;
      for (let i = 0; i < TASKS; i += 20) {
        if (i === TASKS / 2) {
          // Both clients are on the first node of the list: kill it.
          process.kill(nodes[0]!.pid()!, 'SIGKILL');
          killedAt = Date.now();
          trace('node 0 killed');
        }
        await Promise.all(Array.from({ length: 20 }, (_, k) => send(i + k)));
      }
      trace(`sent: ${confirmed.size} confirmed, ${failures} failed attempts`);
      assert.equal(confirmed.size, TASKS + 1);
      await waitFor(() => [...confirmed].every((id) => got.has(id)), 60_000, `every confirmed send consumed (${got.size} so far)`);
      const duplicates = [...got.values()].reduce((a, c) => a + c - 1, 0);
      t.diagnostic(`cluster up in ${clusterMs} ms; ${confirmed.size} confirmed, ${got.size} consumed, ${duplicates} duplicates, ${failures} failed send attempts (retried); kill to end ${Date.now() - killedAt} ms; total ${Date.now() - t0} ms`);
      assert.ok(duplicates <= PREFETCH, `${duplicates} duplicates > prefetch ${PREFETCH}`);
      await consumer.cancel().catch(() => undefined);
    } finally {
      await Promise.allSettled([producer.close(), worker.close()]);
    }
  });
});
