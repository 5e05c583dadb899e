/**
 * Worker semantics (Celery's), on the in-memory broker with the solo pool:
 * eta/countdown, expires, retries with backoff, ignore_result, track_started,
 * canvas follow-ups, bad input handling and graceful shutdown.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { z } from 'zod';
import { JSON_SERIALIZER } from '../../../src/codec/serializers.ts';
import { RemoteTaskError } from '../../../src/errors.ts';
import { buildTaskMessage } from '../../../src/protocol/task-message.ts';
import { newId } from '../../../src/protocol/ids.ts';
import { currentTask } from '../../../src/worker/context.ts';
import type { WireMessage } from '../../../src/protocol/types.ts';
import { memoryFixture } from '../../helpers/app-fixture.ts';
import { sleep, waitFor } from '../../helpers/services.ts';

describe('worker semantics', () => {
  it('runs a task and stores SUCCESS; countdown is honoured', async () => {
    const f = memoryFixture();
    const add = f.app.task('t.add', (x: number, y: number) => x + y);
    await f.startWorker();
    assert.equal(await (await add.delay(2, 3)).get({ timeoutMs: 2000 }), 5);
    const t0 = Date.now();
    const r = await add.applyAsync([1, 1], {}, { countdown: 0.5 });
    assert.equal(await r.get({ timeoutMs: 3000 }), 2);
    assert.ok(Date.now() - t0 >= 480, `ran after ${Date.now() - t0} ms`);
    await f.close();
  });

  it('revokes an expired task without running it (REVOKED, TaskRevokedError expired)', async () => {
    const f = memoryFixture();
    let ran = 0;
    const t = f.app.task('t.expiring', () => ++ran);
    const r = await t.applyAsync([], {}, { expires: 0.05 });
    await sleep(100);
    await f.startWorker();
    await assert.rejects(r.get({ timeoutMs: 2000 }), (e: unknown) => e instanceof RemoteTaskError && e.state === 'REVOKED' && e.excType === 'TaskRevokedError' && e.excMessage[0] === 'expired');
    assert.equal(ran, 0);
    await f.close();
  });

  it('revokes a task whose eta passes its expiry while held', async () => {
    const f = memoryFixture();
    let ran = 0;
    const t = f.app.task('t.eta-expire', () => ++ran);
    await f.startWorker();
    const r = await t.applyAsync([], {}, { countdown: 0.3, expires: 0.1 });
    await assert.rejects(r.get({ timeoutMs: 2000 }), { state: 'REVOKED' });
    assert.equal(ran, 0);
    await f.close();
  });

  it('retries with exponential backoff until success, storing RETRY in between', async () => {
    const f = memoryFixture();
    const times: number[] = [];
    const flaky = f.app.task(
      't.flaky',
      (x: number) => {
        times.push(Date.now());
        if (currentTask().request.retries < 2) {
          const e = new Error('transient');
          e.name = 'ConnectionError';
          currentTask().retry({ exc: e });
        }
        return x * 2;
      },
      { retryBackoff: 0.2, retryJitter: false, maxRetries: 5 },
    );
    await f.startWorker();
    const r = await flaky.delay(21);
    await waitFor(async () => (await r.status()) === 'RETRY', 2000, 'RETRY state');
    const meta = await r.meta();
    assert.equal((meta.result as { exc_type: string }).exc_type, 'ConnectionError');
    assert.equal(await r.get({ timeoutMs: 5000 }), 42);
    assert.equal(times.length, 3);
    // backoff 0.2 s × 2^retries: ≥ 0.2 s then ≥ 0.4 s
    assert.ok(times[1]! - times[0]! >= 190, `first gap ${times[1]! - times[0]!}`);
    assert.ok(times[2]! - times[1]! >= 390, `second gap ${times[2]! - times[1]!}`);
    await f.close();
  });

  it('fails with the original error once maxRetries is used up', async () => {
    const f = memoryFixture();
    let runs = 0;
    const t = f.app.task(
      't.always-retry',
      () => {
        runs++;
        currentTask().retry({ countdown: 0, exc: new RangeError('still broken') });
      },
      { maxRetries: 2 },
    );
    await f.startWorker();
    await assert.rejects((await t.delay()).get({ timeoutMs: 3000 }), (e: unknown) => e instanceof RemoteTaskError && e.excType === 'RangeError');
    assert.equal(runs, 3);
    await f.close();
  });

  it('autoretryFor retries on the listed errors', async () => {
    const f = memoryFixture();
    let runs = 0;
    class Flaky extends Error {}
    const t = f.app.task(
      't.autoretry',
      () => {
        if (++runs < 3) throw new Flaky('again');
        return 'ok';
      },
      { autoretryFor: [Flaky], defaultRetryDelay: 0 },
    );
    await f.startWorker();
    assert.equal(await (await t.delay()).get({ timeoutMs: 3000 }), 'ok');
    assert.equal(runs, 3);
    await f.close();
  });

  it('stores STARTED with trackStarted, nothing with ignoreResult', async () => {
    const f = memoryFixture({ taskTrackStarted: true });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const slow = f.app.task('t.slow', async () => {
      await gate;
      return 1;
    });
    const quiet = f.app.task('t.quiet', () => 1, { ignoreResult: true });
    await f.startWorker();
    const r = await slow.delay();
    await waitFor(async () => (await r.status()) === 'STARTED', 2000, 'STARTED');
    assert.equal(((await r.meta()).result as { hostname: string }).hostname.length > 0, true);
    release();
    assert.equal(await r.get({ timeoutMs: 2000 }), 1);
    const q = await quiet.delay();
    await sleep(200);
    assert.equal(await q.status(), 'PENDING');
    await f.close();
  });

  it('binds kwargs by declared names; refuses unknown kwargs as TypeError; validates schemas', async () => {
    const f = memoryFixture();
    f.app.task('t.kw', (a: number, b: number) => a - b, { params: ['a', 'b'] });
    const strict = f.app.task('t.strict', (n: number) => n, { schema: { args: z.tuple([z.number().int().positive()]) } });
    await f.startWorker();
    assert.equal(await (await f.app.sendTask('t.kw', [], { b: 1, a: 10 })).get({ timeoutMs: 2000 }), 9);
    await assert.rejects((await f.app.sendTask('t.kw', [1], { c: 2 })).get({ timeoutMs: 2000 }), { excType: 'TypeError' });
    // The client validates before sending …
    await assert.rejects(strict.delay(-1), { code: 'ERR_VALIDATION', field: 'args[0]' });
    // … and the worker validates again before running (a message from elsewhere).
    const msg = buildTaskMessage({ task: 't.strict', id: newId(), args: [-1], kwargs: {} }, JSON_SERIALIZER);
    await f.broker.publish('celery', msg);
    await assert.rejects(f.app.asyncResult(String(msg.headers.id)).get({ timeoutMs: 2000 }), { excType: 'ValidationError' });
    await f.close();
  });

  it('sends the next chain step and link callbacks with the result prepended', async () => {
    const f = memoryFixture();
    f.app.task('t.add', (x: number, y: number) => x + y);
    await f.startWorker();
    const step3 = newId();
    const step2 = newId();
    const cb = newId();
    const sig = (args: number[], id: string) => ({ task: 't.add', args, kwargs: {}, options: { task_id: id }, subtask_type: null, immutable: false });
    const msg = buildTaskMessage(
      { task: 't.add', id: newId(), args: [1, 2], kwargs: {}, embed: { chain: [sig([4], step3), sig([3], step2)], callbacks: [sig([100], cb)] } },
      JSON_SERIALIZER,
    );
    await f.broker.publish('celery', msg);
    assert.equal(await f.app.asyncResult(step3).get({ timeoutMs: 3000 }), 10);
    assert.equal(await f.app.asyncResult(cb).get({ timeoutMs: 3000 }), 103);
    const first = await f.app.asyncResult(String(msg.headers.id)).meta();
    assert.deepEqual(first.children, [[[cb, null], null], [[step2, null], null]]);
    const second = await f.app.asyncResult(step2).meta();
    assert.equal(second.parent_id, msg.headers.id);
    await f.close();
  });

  describe('bad input is dead-lettered with its id and reason; the worker keeps serving', () => {
    const good = (): WireMessage => buildTaskMessage({ task: 't.ok', id: newId(), args: [], kwargs: {} }, JSON_SERIALIZER);
    const cases: Array<[string, (m: WireMessage) => WireMessage, RegExp]> = [
      ['invalid JSON', (m) => ({ ...m, body: Buffer.from('[[1, 2], {') }), /invalid JSON/],
      ['pickle content type', (m) => ({ ...m, contentType: 'application/x-python-serialize', contentEncoding: 'binary', body: Buffer.from('\x80\x04K\x01.', 'latin1') }), /not accepted/],
      ['a body that is not [args, kwargs, embed]', (m) => ({ ...m, body: Buffer.from('{"just": "an object"}') }), /not \[args, kwargs, embed\]/],
      ['args that are not a list', (m) => ({ ...m, body: Buffer.from('["x", {}, {}]') }), /args is not an array/],
      ['an unparsable eta', (m) => ({ ...m, headers: { ...m.headers, eta: 'tomorrow' } }), /eta/],
      ['a __proto__ payload', (m) => ({ ...m, body: Buffer.from('[[], {"__proto__": {"polluted": true}}, {}]') }), /forbidden key/],
    ];
    for (const [name, mutate, reason] of cases) {
      it(name, async () => {
        const f = memoryFixture();
        let okRuns = 0;
        f.app.task('t.ok', () => ++okRuns);
        const w = await f.startWorker();
        const bad = mutate(good());
        await f.broker.publish('celery', bad);
        const after = good();
        await f.broker.publish('celery', after);
        await f.app.asyncResult(String(after.headers.id)).get({ timeoutMs: 2000 });
        const dead = await f.broker.deadLetters('celery');
        assert.equal(dead.length, 1);
        assert.match(dead[0]!.reason, reason);
        const line = f.logs.find((l) => l.id === bad.headers.id && l.level === 50);
        assert.ok(line, 'an error log line names the message id');
        assert.equal(w.stats().rejected, 1);
        assert.equal(({} as Record<string, unknown>).polluted, undefined);
        await f.close();
      });
    }

    it('an unknown task name: FAILURE NotRegistered stored, message dead-lettered', async () => {
      const f = memoryFixture();
      await f.startWorker();
      const r = await f.app.sendTask('t.nobody-knows-me', [1]);
      await assert.rejects(r.get({ timeoutMs: 2000 }), { excType: 'NotRegistered' });
      await waitFor(async () => (await f.broker.deadLetters('celery')).length === 1, 2000, 'dead letter');
      assert.match((await f.broker.deadLetters('celery'))[0]!.reason, /unregistered task t\.nobody-knows-me/);
      await f.close();
    });

    it('a protocol v1 message is converted and run', async () => {
      const f = memoryFixture();
      f.app.task('t.add', (x: number, y: number) => x + y);
      await f.startWorker();
      const id = newId();
      const v1: WireMessage = {
        headers: {},
        properties: { correlation_id: id, reply_to: '', delivery_mode: 2, priority: 0 },
        contentType: 'application/json',
        contentEncoding: 'utf-8',
        body: Buffer.from(JSON.stringify({ task: 't.add', id, args: [20, 22], kwargs: {}, retries: 0, eta: null, expires: null, utc: true, callbacks: null, errbacks: null, timelimit: [null, null], taskset: null, chord: null })),
      };
      await f.broker.publish('celery', v1);
      assert.equal(await f.app.asyncResult(id).get({ timeoutMs: 2000 }), 42);
      await f.close();
    });
  });

  it('graceful shutdown requeues held ETA tasks and lets running tasks finish', async () => {
    const f = memoryFixture({ taskAcksLate: true });
    let finished = 0;
    const slow = f.app.task('t.slow', async () => {
      await sleep(300);
      return ++finished;
    });
    const later = f.app.task('t.later', () => 'later');
    const w = await f.startWorker({ shutdownTimeoutMs: 5000 });
    const running = await slow.delay();
    const held = await later.applyAsync([], {}, { countdown: 60 });
    await waitFor(() => w.stats().active === 1 && w.stats().held === 1, 2000, 'one running, one held');
    await w.stop();
    assert.equal(await running.get({ timeoutMs: 1000 }), 1);
    assert.equal(await held.status(), 'PENDING');
    assert.equal(await f.broker.queueLength('celery'), 1, 'the ETA task is back in the queue');
    await f.close();
  });
});
