/**
 * OpenTelemetry tracing through a Celeriac client and a Celeriac worker
 * (in-memory broker and backend, solo pool): one trace id from the
 * client's span to the worker's run span, carried only by the message's
 * `traceparent` header; Python's span names and attributes.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { memoryFixture, type MemoryFixture } from '../../helpers/app-fixture.ts';
import { installTestOtel, parentOf } from '../../helpers/otel.ts';
import type { WireMessage } from '../../../src/protocol/types.ts';
import { currentTask } from '../../../src/core/task-context.ts';

const otel = installTestOtel();
const tracer = trace.getTracer('test');

/** Record every message the broker is asked to publish. */
function spyPublish(f: MemoryFixture): WireMessage[] {
  const seen: WireMessage[] = [];
  const publish = f.broker.publish.bind(f.broker);
  f.broker.publish = (queue, message, options) => {
    seen.push(message);
    return publish(queue, message, options);
  };
  return seen;
}

describe('OpenTelemetry tracing (on)', () => {
  let f: MemoryFixture;
  let published: WireMessage[];
  before(async () => {
    f = memoryFixture({ telemetryTracing: true });
    published = spyPublish(f);
    f.app.task('otel.add', (x: number, y: number) => x + y);
    f.app.task('otel.fail', () => {
      throw new TypeError('bad input');
    });
    const leaf = f.app.task('otel.leaf', () => 'leaf');
    f.app.task('otel.parent', async () => {
      await leaf.delay();
      return 'parent';
    });
    let tries = 0;
    f.app.task('otel.flaky', () => {
      if (tries++ === 0) currentTask().retry({ countdown: 0, exc: new Error('transient') });
      return 'ok';
    });
    await f.startWorker();
  });
  after(() => f.close());

  it('a trace started in the client continues in the worker with one trace id', async () => {
    let requestTrace = '';
    let requestSpan = '';
    let taskId = '';
    const value = await tracer.startActiveSpan('http-request', async (span) => {
      requestTrace = span.spanContext().traceId;
      requestSpan = span.spanContext().spanId;
      const r = await f.app.sendTask('otel.add', [2, 3]);
      taskId = r.id;
      const v = await r.get({ timeoutMs: 10_000 });
      span.end();
      return v;
    });
    assert.equal(value, 5);
    const send = await otel.waitSpan('apply_async/otel.add', 5000, (s) => s.attributes['messaging.message_id'] === taskId);
    const run = await otel.waitSpan('run/otel.add', 5000, (s) => s.attributes['messaging.message_id'] === taskId);
    const wait = await otel.waitSpan('result/otel.add', 5000, (s) => s.attributes['messaging.message_id'] === taskId);
    // One trace: request → apply_async → run; the result wait is the request's child too.
    assert.equal(send.spanContext().traceId, requestTrace);
    assert.equal(run.spanContext().traceId, requestTrace);
    assert.equal(wait.spanContext().traceId, requestTrace);
    assert.equal(parentOf(send), requestSpan);
    assert.equal(parentOf(run), send.spanContext().spanId);
    assert.equal(parentOf(wait), requestSpan);
    assert.equal(send.kind, SpanKind.PRODUCER);
    assert.equal(run.kind, SpanKind.CONSUMER);
    assert.equal(wait.kind, SpanKind.CLIENT);
    // Python's attribute names.
    assert.deepEqual(
      { action: send.attributes['celery.action'], name: send.attributes['celery.task_name'], id: send.attributes['messaging.message_id'], dest: send.attributes['messaging.destination'] },
      { action: 'apply_async', name: 'otel.add', id: taskId, dest: 'celery' },
    );
    assert.equal(run.attributes['celery.action'], 'run');
    assert.equal(run.attributes['celery.task_name'], 'otel.add');
    assert.equal(run.attributes['celery.state'], 'SUCCESS');
    assert.equal(typeof run.attributes['celery.hostname'], 'string');
    assert.equal(run.attributes['messaging.message_id'], taskId);
    assert.equal(wait.attributes['celery.action'], 'result');
    // The context travelled in the message: a top-level `traceparent` header naming the send span.
    const msg = published.find((m) => m.headers.id === taskId);
    assert.ok(msg);
    assert.equal(msg.headers.traceparent, `00-${requestTrace}-${send.spanContext().spanId}-01`);
  });

  it('a receive span (sibling of the run span) covers intake and ends RECEIVED, with the eta of a held task', async () => {
    const r = await f.app.sendTask('otel.add', [3, 4], {}, { countdown: 0.2 });
    assert.equal(await r.get({ timeoutMs: 10_000 }), 7);
    const send = await otel.waitSpan('apply_async/otel.add', 5000, (s) => s.attributes['messaging.message_id'] === r.id);
    const receive = await otel.waitSpan('receive/otel.add', 5000, (s) => s.attributes['messaging.message_id'] === r.id);
    const run = await otel.waitSpan('run/otel.add', 5000, (s) => s.attributes['messaging.message_id'] === r.id);
    assert.equal(receive.kind, SpanKind.CONSUMER);
    assert.equal(receive.spanContext().traceId, send.spanContext().traceId);
    assert.equal(parentOf(receive), send.spanContext().spanId);
    assert.deepEqual([receive.attributes['celery.action'], receive.attributes['celery.state'], receive.attributes['messaging.destination']], ['receive', 'RECEIVED', 'celery']);
    assert.match(String(receive.attributes['celery.eta']), /^\d{4}-\d\d-\d\dT/);
    // Received before it ran: the eta hold is between the two.
    const ms = (t: [number, number]): number => t[0] * 1000 + t[1] / 1e6;
    assert.ok(ms(receive.endTime) <= ms(run.startTime), 'the receive span ended before the run began');
  });

  it('a refused message ends its receive span REJECTED with the reason, in the sender\'s trace', async () => {
    const id = '6f0c7a52-0000-4000-8000-0000000000aa';
    const traceId = 'ab'.repeat(16);
    const parent = 'cd'.repeat(8);
    const message = f.app.producer.buildMessage({ task: 'otel.not-registered', id, args: [], kwargs: {}, extraHeaders: { traceparent: `00-${traceId}-${parent}-01` } });
    await f.app.producer.publish('celery', message);
    const receive = await otel.waitSpan('receive/otel.not-registered', 5000, (s) => s.attributes['messaging.message_id'] === id);
    assert.equal(receive.spanContext().traceId, traceId);
    assert.equal(parentOf(receive), parent);
    assert.equal(receive.attributes['celery.state'], 'REJECTED');
    assert.match(String(receive.attributes['celery.reject.reason']), /unregistered task otel\.not-registered/);
    assert.equal(receive.status.code, SpanStatusCode.ERROR);
    assert.equal(otel.spans().filter((s) => s.name === 'run/otel.not-registered').length, 0, 'it never ran');
  });

  it('an expired message ends its receive span REVOKED', async () => {
    const r = await f.app.sendTask('otel.add', [1, 2], {}, { expires: new Date(Date.now() - 1000) });
    const receive = await otel.waitSpan('receive/otel.add', 5000, (s) => s.attributes['messaging.message_id'] === r.id);
    assert.deepEqual([receive.attributes['celery.state'], receive.attributes['celery.reject.reason']], ['REVOKED', 'expired']);
  });

  it('the run span takes its parent from the message alone, not from the context the consumer runs in', async () => {
    // No active span here: the send is a root, and the run span is its child (same trace), nothing else.
    const r = await f.app.sendTask('otel.add', [1, 1]);
    assert.equal(await r.get({ timeoutMs: 10_000 }), 2);
    const send = await otel.waitSpan('apply_async/otel.add', 5000, (s) => s.attributes['messaging.message_id'] === r.id);
    const run = await otel.waitSpan('run/otel.add', 5000, (s) => s.attributes['messaging.message_id'] === r.id);
    assert.equal(parentOf(send), undefined);
    assert.equal(run.spanContext().traceId, send.spanContext().traceId);
    assert.equal(parentOf(run), send.spanContext().spanId);
  });

  it('a send from inside a task is a child of its run span', async () => {
    const r = await f.app.sendTask('otel.parent', []);
    assert.equal(await r.get({ timeoutMs: 10_000 }), 'parent');
    const run = await otel.waitSpan('run/otel.parent', 5000, (s) => s.attributes['messaging.message_id'] === r.id);
    const childSend = await otel.waitSpan('apply_async/otel.leaf', 5000, (s) => parentOf(s) === run.spanContext().spanId);
    const childRun = await otel.waitSpan('run/otel.leaf', 5000, (s) => parentOf(s) === childSend.spanContext().spanId);
    assert.equal(childRun.spanContext().traceId, run.spanContext().traceId);
  });

  it('a retry is sent inside the first run span and runs as its grandchild, in one trace', async () => {
    const r = await f.app.sendTask('otel.flaky', []);
    assert.equal(await r.get({ timeoutMs: 10_000 }), 'ok');
    const first = await otel.waitSpan('run/otel.flaky', 5000, (s) => s.attributes['messaging.message_id'] === r.id && s.attributes['celery.state'] === 'RETRY');
    assert.match(String(first.attributes['celery.retry.reason']), /transient/);
    const resend = await otel.waitSpan('apply_async/otel.flaky', 5000, (s) => parentOf(s) === first.spanContext().spanId);
    assert.equal(resend.attributes['celery.retries'], 1);
    const second = await otel.waitSpan('run/otel.flaky', 5000, (s) => parentOf(s) === resend.spanContext().spanId);
    assert.equal(second.attributes['celery.state'], 'SUCCESS');
    assert.equal(second.attributes['celery.retries'], 1);
    assert.equal(second.spanContext().traceId, first.spanContext().traceId);
  });

  it('a failing task ends its run span with an error status and celery.state FAILURE', async () => {
    const r = await f.app.sendTask('otel.fail', []);
    await assert.rejects(r.get({ timeoutMs: 10_000 }));
    const run = await otel.waitSpan('run/otel.fail', 5000, (s) => s.attributes['messaging.message_id'] === r.id);
    assert.equal(run.attributes['celery.state'], 'FAILURE');
    assert.equal(run.status.code, SpanStatusCode.ERROR);
    assert.match(run.status.message ?? '', /TypeError/);
    const wait = await otel.waitSpan('result/otel.fail', 5000, (s) => s.attributes['messaging.message_id'] === r.id);
    assert.equal(wait.status.code, SpanStatusCode.ERROR);
  });

  it('a traceparent from the network that is malformed starts a new trace instead of failing the task', async () => {
    const id = '6f0c7a52-0000-4000-8000-00000000beef';
    const message = f.app.producer.buildMessage({ task: 'otel.add', id, args: [4, 4], kwargs: {}, extraHeaders: { traceparent: 'not-a-traceparent', tracestate: 42 } });
    await f.app.producer.publish('celery', message);
    assert.equal(await f.app.asyncResult(id).get({ timeoutMs: 10_000 }), 8);
    const run = await otel.waitSpan('run/otel.add', 5000, (s) => s.attributes['messaging.message_id'] === id);
    assert.equal(parentOf(run), undefined);
  });
});

describe('OpenTelemetry tracing (off: the default)', () => {
  it('creates no span and adds no header', async () => {
    const f = memoryFixture();
    try {
      const published = spyPublish(f);
      f.app.task('otel.off', () => 1);
      await f.startWorker();
      const before = otel.spans().length;
      const r = await tracer.startActiveSpan('outer', async (span) => {
        const res = await f.app.sendTask('otel.off', []);
        await res.get({ timeoutMs: 10_000 });
        span.end();
        return res;
      });
      assert.equal(f.app.tracing, undefined);
      const msg = published.find((m) => m.headers.id === r.id);
      assert.ok(msg);
      assert.equal(msg.headers.traceparent, undefined);
      // Only the test's own span was added.
      assert.deepEqual(otel.spans().slice(before).map((s) => s.name), ['outer']);
    } finally {
      await f.close();
    }
  });

  it('the setting is refused when it is not a boolean, accepted in snake_case', async () => {
    assert.throws(() => memoryFixture({ telemetryTracing: 'yes' as never }), /telemetryTracing must be true or false/);
    const f = memoryFixture({ telemetry_tracing: true } as never);
    assert.equal(f.app.settings.telemetryTracing, true);
    await f.close();
  });
});
