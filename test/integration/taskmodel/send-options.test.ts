/**
 * Celery's send options (issue 17 item 7): retries, headers, compression,
 * shadow, replyTo, timeLimit/softTimeLimit per call, mapped into the v2
 * message as Celery 5.2.6 maps them; unknown options refused by the type
 * and at run time. A Python worker's view is in
 * test/interop/redis/taskmodel-send-options.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { inflateSync } from 'node:zlib';
import { memoryFixture } from '../../helpers/app-fixture.ts';
import { currentTask } from '../../../src/worker/context.ts';
import { ValidationError } from '../../../src/errors.ts';
import { UnknownSendOptionError } from '../../../src/client/send-options.ts';
import type { WireMessage } from '../../../src/protocol/types.ts';

function capture(f: ReturnType<typeof memoryFixture>): WireMessage[] {
  const sent: WireMessage[] = [];
  const publish = f.broker.publish.bind(f.broker);
  f.broker.publish = (queue, message, options) => {
    sent.push(message);
    return publish(queue, message, options);
  };
  return sent;
}

describe('send options', () => {
  it('map into the v2 message as Celery does, and the worker sees them', async () => {
    const f = memoryFixture();
    const sent = capture(f);
    const task = f.app.task('tm.req', () => {
      const r = currentTask().request;
      return { retries: r.retries, timeLimit: r.timeLimit, replyTo: r.replyTo, tenant: r.headers.x_tenant, trace: r.headers.x_trace };
    });
    try {
      await f.startWorker();
      const res = await task.applyAsync([], {}, {
        retries: 2,
        headers: { x_tenant: 'acme', x_trace: { span: [1, 2] } },
        compression: 'zlib',
        shadow: 'tm.shadowed',
        replyTo: 'reply-queue-1',
        timeLimit: 30,
        softTimeLimit: 20,
      });
      const m = sent[0]!;
      assert.equal(m.headers.retries, 2);
      assert.deepEqual(m.headers.timelimit, [30, 20]);
      assert.equal(m.headers.shadow, 'tm.shadowed');
      assert.equal(m.headers.x_tenant, 'acme');
      assert.deepEqual(m.headers.x_trace, { span: [1, 2] });
      assert.equal(m.headers.compression, 'application/x-gzip');
      assert.equal(m.properties.reply_to, 'reply-queue-1');
      assert.deepEqual(JSON.parse(inflateSync(m.body).toString()), [[], {}, { callbacks: null, errbacks: null, chain: null, chord: null }]);
      // Custom headers come after the 16 standard ones.
      assert.deepEqual(Object.keys(m.headers).slice(0, 3), ['lang', 'task', 'id']);
      assert.deepEqual(await res.get({ timeoutMs: 10_000 }), { retries: 2, timeLimit: [30, 20], replyTo: 'reply-queue-1', tenant: 'acme', trace: { span: [1, 2] } });
    } finally {
      await f.close();
    }
  });

  it('an unknown option is a type error and a run-time UnknownSendOptionError naming it; nothing is sent', async () => {
    const f = memoryFixture();
    const sent = capture(f);
    const task = f.app.task('tm.unknown', (x: number) => x, { params: ['x'] });
    try {
      // @ts-expect-error: `countDown` is not a send option (countdown is).
      const p = task.applyAsync([1], {}, { countDown: 5 });
      await assert.rejects(p, (err: unknown) => {
        assert.ok(err instanceof UnknownSendOptionError);
        assert.ok(err instanceof ValidationError);
        assert.equal(err.option, 'countDown');
        assert.equal(err.field, 'options.countDown');
        assert.match(err.message, /unknown send option "countDown"/);
        return true;
      });
      // @ts-expect-error: `callback` is not a send option (Celery's is link).
      await assert.rejects(f.app.sendTask('tm.unknown', [1], {}, { callback: 'x' }), UnknownSendOptionError);
      await assert.rejects(f.app.sendMany([{ name: 'tm.unknown', args: [1], options: { headerz: {} } as never }]), UnknownSendOptionError);
      assert.equal(sent.length, 0);
    } finally {
      await f.close();
    }
  });

  it('bad values are refused with ValidationError naming the option', async () => {
    const f = memoryFixture();
    const sent = capture(f);
    const task = f.app.task('tm.bad', (x: number) => x, { params: ['x'] });
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ retries: -1 }, /retries must be a non-negative integer/],
      [{ retries: 1.5 }, /retries/],
      [{ timeLimit: 0 }, /timeLimit must be a positive number/],
      [{ softTimeLimit: Number.NaN }, /softTimeLimit/],
      [{ shadow: '' }, /shadow/],
      [{ replyTo: 7 }, /replyTo/],
      [{ compression: 'bzip2' }, /compression "bzip2" is not supported/],
      [{ headers: { id: 'forged' } }, /may not set "id"/],
      [{ headers: { task: 'other.task' } }, /may not set "task"/],
      [{ headers: { compression: 'application/x-gzip' } }, /may not set "compression"/],
      [{ headers: { celeriac_signature: 'x' } }, /may not set "celeriac_signature"/],
      [{ headers: { x: () => 1 } }, /"x" is not a JSON value/],
      [{ headers: { x: Number.POSITIVE_INFINITY } }, /not a JSON value/],
      [{ headers: [] }, /headers must be an object/],
    ];
    try {
      for (const [options, re] of cases) {
        await assert.rejects(task.applyAsync([1], {}, options as never), (err: unknown) => {
          assert.ok(err instanceof ValidationError, `${JSON.stringify(options)}: ${String(err)}`);
          assert.match(err.message, re, JSON.stringify(options));
          return true;
        });
      }
      assert.equal(sent.length, 0);
    } finally {
      await f.close();
    }
  });
});
