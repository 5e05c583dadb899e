/**
 * Fanout interop cases against real Python Celery 5.2.6, shared by the
 * Redis and RabbitMQ files (test/interop/{redis,amqp}/fanout.test.ts):
 * events both ways (Python's `app.events.Receiver` and `EventDispatcher`)
 * and remote control both ways (Python's `app.control.ping()` answered by a
 * Celeriac subscription; a Celeriac ping answered by a Python worker).
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { it } from 'node:test';
import type { TestContext } from 'node:test';
import { controlExchange, controlQueueName, eventExchange, replyExchange, type BroadcastDelivery, type Broker } from '../../src/core/broker.ts';
import type { WireMessage } from '../../src/protocol/types.ts';
import { pyScript, startPythonWorker } from './python-celery.ts';
import { requireService, sleep, waitFor } from './services.ts';

export interface FanoutInteropTarget {
  ready: () => boolean;
  what: string;
  /** A Celeriac broker on the shared broker (the suite closes it). */
  broker: () => Promise<Broker>;
  /** Environment for the Python side (CELERY_BROKER_URL, CELERY_RESULT_BACKEND). */
  env: () => Record<string, string>;
}

function jsonMessage(body: unknown, headers: Record<string, unknown>, deliveryMode: number): WireMessage {
  return { headers, properties: { delivery_mode: deliveryMode, priority: 0 }, contentType: 'application/json', contentEncoding: 'utf-8', body: Buffer.from(JSON.stringify(body)) };
}

/** A `worker-heartbeat` as Celery's dispatcher writes it (fields of events/worker-heartbeat.json). */
function heartbeat(hostname: string, marker: string): WireMessage {
  const event = {
    hostname, utcoffset: 0, pid: process.pid, clock: 1, freq: 2.0, active: 0, processed: 0,
    loadavg: [0.1, 0.2, 0.3], sw_ident: 'ts-celery', sw_ver: '0.0.0', sw_sys: 'Linux', marker,
    timestamp: Date.now() / 1000, type: 'worker-heartbeat',
  };
  return jsonMessage(event, { hostname }, 1);
}

const PY_RECEIVER = `
import json, os, socket, time
from harness_tasks import app
marker = os.environ['FANOUT_MARKER']
found = []
def on_event(event):
    if event.get('marker') == marker:
        found.append(event)
with app.connection_for_read() as conn:
    recv = app.events.Receiver(conn, handlers={'*': on_event})
    deadline = time.time() + 30
    with recv.consumer_context() as (c, channel, consumers):
        while not found and time.time() < deadline:
            try:
                c.drain_events(timeout=0.5)
            except socket.timeout:
                pass
print(json.dumps({'found': found[:1]}, default=str))
`;

const PY_DISPATCHER = `
import os, time
from harness_tasks import app
marker = os.environ['FANOUT_MARKER']
with app.connection_for_write() as conn:
    d = app.events.Dispatcher(conn, hostname='py@fanout-interop', enabled=True)
    for i in range(int(os.environ.get('FANOUT_COUNT', '40'))):
        d.send('worker-heartbeat', marker=marker, n=i, freq=2.0, active=0, processed=i)
        time.sleep(0.25)
    d.close()
print('done')
`;

const PY_PING = `
import json, os
from harness_tasks import app
node = os.environ['FANOUT_NODE']
print(json.dumps(app.control.ping(destination=[node], timeout=5)))
`;

/** Define the cases (call inside a `describe`). */
export function fanoutInteropCases(target: FanoutInteropTarget): void {
  const skip = (t: TestContext): boolean => !requireService(t, target.ready(), target.what);

  it('Python app.events.Receiver gets an event Celeriac broadcasts on celeryev', async (t) => {
    if (skip(t)) return;
    const broker = await target.broker();
    const marker = randomUUID();
    let done = false;
    const py = pyScript(PY_RECEIVER, { ...target.env(), FANOUT_MARKER: marker }, 60_000).finally(() => (done = true));
    // The receiver subscribes when it first polls: broadcast until it has seen one.
    while (!done) {
      await broker.broadcast(eventExchange(), 'worker.heartbeat', heartbeat('ts@fanout-interop', marker));
      await sleep(250);
    }
    const out = JSON.parse((await py).trim().split('\n').pop()!) as { found: Array<Record<string, unknown>> };
    assert.equal(out.found.length, 1, 'the Python receiver saw the event');
    const ev = out.found[0]!;
    assert.equal(ev.type, 'worker-heartbeat');
    assert.equal(ev.hostname, 'ts@fanout-interop');
    assert.equal(ev.sw_ident, 'ts-celery');
    assert.equal(typeof ev.local_received, 'number', 'processed by Celery\'s own receiver');
  });

  it('a Celeriac subscription gets the events of Python\'s EventDispatcher', async (t) => {
    if (skip(t)) return;
    const broker = await target.broker();
    const marker = randomUUID();
    const got: BroadcastDelivery[] = [];
    const other: string[] = [];
    const sub = await broker.subscribe(eventExchange(), { bindingKeys: ['worker.#'] }, (d) => {
      const body = JSON.parse(d.message.body.toString()) as { marker?: string };
      if (body.marker === marker) got.push(d);
      else other.push(d.routingKey);
    });
    const py = pyScript(PY_DISPATCHER, { ...target.env(), FANOUT_MARKER: marker, FANOUT_COUNT: '40' }, 60_000);
    await waitFor(() => got.length >= 3, 20_000, 'events from Python');
    await sub.close();
    await py;
    const d = got[0]!;
    assert.equal(d.exchange, 'celeryev');
    assert.equal(d.routingKey, 'worker.heartbeat');
    assert.equal(d.message.contentType, 'application/json');
    assert.equal(d.message.headers.hostname, 'py@fanout-interop');
    assert.equal(d.message.properties.delivery_mode, 1);
    const body = JSON.parse(d.message.body.toString()) as Record<string, unknown>;
    assert.equal(body.type, 'worker-heartbeat');
    assert.equal(body.hostname, 'py@fanout-interop');
    const ns = got.map((g) => (JSON.parse(g.message.body.toString()) as { n: number }).n);
    assert.deepEqual(ns, [...new Set(ns)].sort((a, b) => a - b), 'each event once, in order');
  });

  it('Python app.control.ping() is answered through a Celeriac pidbox subscription and reply', async (t) => {
    if (skip(t)) return;
    const broker = await target.broker();
    const node = `ts-${randomUUID().slice(0, 8)}@fanout-interop`;
    const requests: Array<Record<string, unknown>> = [];
    const sub = await broker.subscribe(controlExchange(), { queue: controlQueueName(node) }, (d) => {
      const req = JSON.parse(d.message.body.toString()) as { method: string; destination: string[] | null; ticket?: string; reply_to?: { exchange: string; routing_key: string } };
      requests.push(req);
      if (req.method !== 'ping' || (req.destination && !req.destination.includes(node)) || !req.reply_to) return;
      void broker.sendReply(replyExchange(), req.reply_to.routing_key, jsonMessage({ [node]: { ok: 'pong' } }, { ticket: req.ticket, clock: 1 }, 1));
    });
    const out = JSON.parse((await pyScript(PY_PING, { ...target.env(), FANOUT_NODE: node }, 60_000)).trim().split('\n').pop()!) as unknown;
    await sub.close();
    assert.deepEqual(out, [{ [node]: { ok: 'pong' } }]);
    assert.equal(requests[0]!.method, 'ping');
  });

  it('a Python worker answers a Celeriac ping on a Celeriac reply queue', async (t) => {
    if (skip(t)) return;
    const broker = await target.broker();
    const env = target.env();
    const node = `py-${randomUUID().slice(0, 8)}@fanout-interop`;
    const worker = await startPythonWorker({ brokerUrl: env.CELERY_BROKER_URL!, backendUrl: env.CELERY_RESULT_BACKEND!, name: node, concurrency: 1, args: ['-Q', `fanout-interop-${randomUUID().slice(0, 8)}`] });
    try {
      const oid = randomUUID();
      const replies = await broker.openReplyQueue(replyExchange(), oid);
      const ticket = randomUUID();
      const request = {
        method: 'ping', arguments: {}, destination: [node], pattern: null, matcher: null, ticket,
        reply_to: { exchange: replyExchange().name, routing_key: oid },
      };
      // The worker's pidbox consumer may start just after "ready": ask again until it answers.
      let reply: BroadcastDelivery | undefined;
      for (let i = 0; i < 20 && !reply; i++) {
        await broker.broadcast(controlExchange(), '', jsonMessage(request, { clock: 1, expires: Date.now() / 1000 + 5 }, 2));
        reply = await replies.receive(1000);
      }
      await replies.close();
      assert.ok(reply, 'the Python worker replied');
      assert.equal(reply.message.headers.ticket, ticket);
      assert.deepEqual(JSON.parse(reply.message.body.toString()), { [node]: { ok: 'pong' } });
    } finally {
      await worker.stop();
    }
  });
}
