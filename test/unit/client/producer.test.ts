/**
 * The Producer routes every message the same way, for client sends and for
 * worker follow-ups: explicit queue/priority, then the task's options, then
 * taskRoutes, then taskDefaultQueue; queue caps go to the broker as maxLength.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createApp } from '../../../src/client/app.ts';
import type { PublishOptions } from '../../../src/core/broker.ts';
import { createMemoryBroker } from '../../../src/transport/memory/broker.ts';
import type { WireMessage } from '../../../src/protocol/types.ts';

function recordingApp(settings: Parameters<typeof createApp>[0] = {}) {
  const broker = createMemoryBroker();
  const sent: Array<{ queue: string; message: WireMessage; options: PublishOptions | undefined }> = [];
  const publish = broker.publish.bind(broker);
  broker.publish = async (queue, message, options) => {
    sent.push({ queue, message, options });
    return publish(queue, message, options);
  };
  const app = createApp({ broker, backend: null, ...settings });
  return { app, sent };
}

describe('Producer', () => {
  it('routes: explicit, then task options, then taskRoutes, then the default queue', () => {
    const { app } = recordingApp({ taskRoutes: { 't.routed': { queue: 'r', priority: 7 } }, taskDefaultQueue: 'dflt' });
    app.task('t.own', () => 1, { queue: 'own', priority: 3 });
    app.task('t.routed', () => 1);
    const p = app.producer;
    assert.deepEqual(p.route('t.own', {}), { queue: 'own', priority: 3 });
    assert.deepEqual(p.route('t.own', { queue: 'x', priority: 1 }), { queue: 'x', priority: 1 });
    assert.deepEqual(p.route('t.routed', {}), { queue: 'r', priority: 7 });
    assert.deepEqual(p.route('t.unknown', {}), { queue: 'dflt', priority: undefined });
  });

  it("a follow-up is routed, prioritised and capped like delay() of its task", async () => {
    const { app, sent } = recordingApp({ maxQueueLength: { own: 5 } });
    const own = app.task('t.own', () => 1, { queue: 'own', priority: 3 });
    await own.delay();
    await app.producer.sendFollowUp({ input: { task: 't.own', id: 'f1', args: [], kwargs: {} } });
    await app.producer.sendFollowUp({ queue: 'elsewhere', input: { task: 't.own', id: 'f2', args: [], kwargs: {}, priority: 9 } });
    assert.deepEqual(
      sent.map((s) => [s.queue, s.options?.priority, s.options?.maxLength, s.message.properties.priority]),
      [
        ['own', 3, 5, 3],
        ['own', 3, 5, 3],
        ['elsewhere', 9, undefined, 9],
      ],
    );
    await app.close();
  });
});
