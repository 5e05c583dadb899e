/**
 * Remote control of a Celeriac worker (Celery's pidbox), on the in-memory
 * broker with the solo pool: request and reply formats, destination and
 * expiry, each command's effect, revokes honoured at intake and after a
 * restart, malformed messages dropped and counted.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { controlExchange } from '../../../src/core/broker.ts';
import { securityCounters } from '../../../src/observability/security-events.ts';
import { newId } from '../../../src/protocol/ids.ts';
import { COMMANDS } from '../../../src/worker/control/commands.ts';
import { memoryFixture } from '../../helpers/app-fixture.ts';
import { ask, controlMessage } from '../../helpers/control-client.ts';
import { sleep, waitFor } from '../../helpers/services.ts';

// Destructive commands are opt-in per deployment (docs/control-security.md); these tests opt in to all of them.
const ALLOW_ALL = { workerControlAllow: ['@all', 'no_such_thing'] };

describe('remote control (pidbox) of a worker', () => {
  it('answers ping in Celery\'s reply format, only when it is a destination, and not after expiry', async () => {
    const f = memoryFixture(ALLOW_ALL);
    const w = await f.startWorker({ nodeName: 'ts1@host' });
    assert.deepEqual(await ask(f.broker, 'ping', {}, { limit: 1 }), [{ 'ts1@host': { ok: 'pong' } }]);
    assert.deepEqual(await ask(f.broker, 'ping', {}, { destination: ['ts1@host'], limit: 1 }), [{ 'ts1@host': { ok: 'pong' } }]);
    assert.deepEqual(await ask(f.broker, 'ping', {}, { destination: ['other@host'], timeoutMs: 300 }), []);
    assert.deepEqual(await ask(f.broker, 'ping', {}, { headers: { clock: 1, expires: Date.now() / 1000 - 1 }, timeoutMs: 300 }), []);
    assert.equal(w.nodeName, 'ts1@host');
    await f.close();
  });

  it('answers an unknown command with kombu\'s error reply', async () => {
    const f = memoryFixture(ALLOW_ALL);
    await f.startWorker({ nodeName: 'ts2@host' });
    assert.deepEqual(await ask(f.broker, 'no_such_thing', {}, { limit: 1 }), [{ 'ts2@host': { error: "KeyError('no_such_thing')" } }]);
    await f.close();
  });

  it('drops and counts a malformed control message, and keeps serving', async () => {
    const f = memoryFixture(ALLOW_ALL);
    await f.startWorker({ nodeName: 'ts3@host' });
    const before = securityCounters().malformed_message ?? 0;
    await f.broker.broadcast(controlExchange(), '', { ...controlMessage({}), body: Buffer.from('{not json') });
    await f.broker.broadcast(controlExchange(), '', controlMessage({ method: 7 }));
    await waitFor(() => (securityCounters().malformed_message ?? 0) >= before + 2, 2000, 'malformed counted');
    assert.deepEqual(await ask(f.broker, 'ping', {}, { limit: 1 }), [{ 'ts3@host': { ok: 'pong' } }]);
    await f.close();
  });

  it('inspect: registered, stats (Celery\'s shape plus the security counters), active, scheduled, active_queues, conf with Celery\'s names', async () => {
    const f = memoryFixture({ ...ALLOW_ALL, brokerUrl: 'memory://' } as never);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const slow = f.app.task('t.slow', async () => gate);
    const add = f.app.task('t.add', (x: number, y: number) => x + y);
    await f.startWorker({ nodeName: 'ts4@host', queues: ['celery'] });
    await (await add.delay(1, 2)).get({ timeoutMs: 2000 });
    const running = await slow.delay();
    const later = await add.applyAsync([1, 1], {}, { countdown: 30 });
    await sleep(100);
    const [reg] = await ask(f.broker, 'registered', {}, { limit: 1 });
    assert.deepEqual(reg, { 'ts4@host': ['t.add', 't.slow'] });
    const [st] = (await ask(f.broker, 'stats', {}, { limit: 1 })) as Array<Record<string, Record<string, unknown>>>;
    const s = st!['ts4@host']!;
    assert.deepEqual(s.total, { 't.add': 1 });
    assert.equal(s.pid, process.pid);
    assert.equal(typeof s.clock, 'string');
    assert.equal((s.pool as Record<string, unknown>)['max-concurrency'], 4);
    assert.ok('rusage' in s && 'broker' in s && 'prefetch_count' in s);
    assert.equal(typeof (s.celeriac as { security: unknown }).security, 'object');
    const [act] = (await ask(f.broker, 'active', { safe: null }, { limit: 1 })) as Array<Record<string, Array<Record<string, unknown>>>>;
    assert.equal(act!['ts4@host']!.length, 1);
    const a = act!['ts4@host']![0]!;
    assert.equal(a.id, running.id);
    assert.equal(a.name, 't.slow');
    assert.equal(a.acknowledged, true);
    assert.deepEqual(a.delivery_info, { exchange: '', routing_key: 'celery', priority: 0, redelivered: false });
    const [sch] = (await ask(f.broker, 'scheduled', {}, { limit: 1 })) as Array<Record<string, Array<{ request: { id: string } }>>>;
    assert.equal(sch!['ts4@host']![0]!.request.id, later.id);
    const [q] = (await ask(f.broker, 'query_task', { ids: [running.id] }, { limit: 1 })) as Array<Record<string, Record<string, unknown[]>>>;
    assert.equal(q!['ts4@host']![running.id]![0], 'active');
    const [aq] = (await ask(f.broker, 'active_queues', {}, { limit: 1 })) as Array<Record<string, Array<{ name: string }>>>;
    assert.deepEqual(aq!['ts4@host']!.map((x) => x.name), ['celery']);
    const [conf] = (await ask(f.broker, 'conf', {}, { limit: 1 })) as Array<Record<string, Record<string, unknown>>>;
    // Celery's setting names (Celeriac's own under theirs); defaults only with with_defaults, as Celery.
    assert.equal(conf!['ts4@host']!.broker_url, 'memory://');
    assert.deepEqual(conf!['ts4@host']!.workerControlAllow, ALLOW_ALL.workerControlAllow);
    assert.equal(conf!['ts4@host']!.task_serializer, undefined);
    const [confAll] = (await ask(f.broker, 'conf', { with_defaults: true }, { limit: 1 })) as Array<Record<string, Record<string, unknown>>>;
    assert.equal(confAll!['ts4@host']!.task_serializer, 'json');
    release();
    await f.close();
  });

  it('revoke: a countdown task ends REVOKED and is not run; Celery\'s reply', async () => {
    const f = memoryFixture(ALLOW_ALL);
    let ran = 0;
    const t = f.app.task('t.later', () => ++ran);
    await f.startWorker({ nodeName: 'ts5@host' });
    const r = await t.applyAsync([], {}, { countdown: 0.5 });
    const replies = await ask(f.broker, 'revoke', { task_id: r.id, terminate: false, signal: 'SIGTERM' }, { limit: 1 });
    assert.deepEqual(replies, [{ 'ts5@host': { ok: `tasks ${r.id} flagged as revoked` } }]);
    await assert.rejects(r.get({ timeoutMs: 3000 }), { state: 'REVOKED', excType: 'TaskRevokedError' });
    assert.equal(ran, 0);
    const [rv] = await ask(f.broker, 'revoked', {}, { limit: 1 });
    assert.deepEqual(rv, { 'ts5@host': [r.id] });
    await f.close();
  });

  it('revoke with terminate: a running task is aborted and ends REVOKED terminated', async () => {
    const f = memoryFixture(ALLOW_ALL);
    const { currentTask } = await import('../../../src/worker/context.ts');
    const t = f.app.task('t.forever', async () => {
      const signal = currentTask()!.signal;
      await new Promise((_, reject) => signal.addEventListener('abort', () => reject(new Error('aborted'))));
    });
    await f.startWorker({ nodeName: 'ts6@host' });
    const r = await t.delay();
    await waitFor(async () => (await ask(f.broker, 'active', {}, { limit: 1 })).some((x) => (x['ts6@host'] as unknown[]).length === 1), 3000, 'task running');
    await ask(f.broker, 'revoke', { task_id: [r.id], terminate: true, signal: 'SIGKILL' }, { limit: 1 });
    await assert.rejects(r.get({ timeoutMs: 3000 }), (e: { state?: string; excMessage?: unknown[] }) => e.state === 'REVOKED' && e.excMessage?.[0] === 'terminated');
    await f.close();
  });

  it('a revoke sent while no worker runs is honoured by the next worker (shared store), at intake', async () => {
    const f = memoryFixture(ALLOW_ALL);
    let ran = 0;
    const t = f.app.task('t.x', () => ++ran);
    const w1 = await f.startWorker({ nodeName: 'ts7@host' });
    const id = newId();
    await ask(f.broker, 'revoke', { task_id: id }, { limit: 1 });
    await w1.stop();
    await t.applyAsync([], {}, { taskId: id } as never);
    await f.startWorker({ nodeName: 'ts7b@host' });
    await assert.rejects(f.app.asyncResult(id).get({ timeoutMs: 3000 }), { state: 'REVOKED' });
    assert.equal(ran, 0);
    await f.close();
  });

  it('control: rate_limit, time_limit, pool_grow/shrink, cancel_consumer/add_consumer, shutdown', async () => {
    const f = memoryFixture(ALLOW_ALL);
    const add = f.app.task('t.add', (x: number, y: number) => x + y);
    const w = await f.startWorker({ nodeName: 'ts8@host', queues: ['celery'] });
    assert.deepEqual(await ask(f.broker, 'rate_limit', { task_name: 't.add', rate_limit: '10/m' }, { limit: 1 }), [{ 'ts8@host': { ok: 'new rate limit set successfully' } }]);
    assert.equal(f.app.registry.get('t.add')!.options.rateLimit, '10/m');
    assert.deepEqual(await ask(f.broker, 'rate_limit', { task_name: 't.add', rate_limit: null }, { limit: 1 }), [{ 'ts8@host': { ok: 'rate limit disabled successfully' } }]);
    assert.deepEqual(await ask(f.broker, 'time_limit', { task_name: 't.add', soft: 5, hard: 10 }, { limit: 1 }), [{ 'ts8@host': { ok: 'time limits set successfully' } }]);
    assert.equal(f.app.registry.get('t.add')!.options.timeLimit, 10);
    assert.deepEqual(await ask(f.broker, 'pool_grow', { n: 2 }, { limit: 1 }), [{ 'ts8@host': { ok: 'pool will grow' } }]);
    const stats = async () => ((await ask(f.broker, 'stats', {}, { limit: 1 }))[0]!['ts8@host'] as { pool: Record<string, number> }).pool['max-concurrency'];
    assert.equal(await stats(), 6);
    await ask(f.broker, 'pool_shrink', { n: 1 }, { limit: 1 });
    assert.equal(await stats(), 5);
    assert.deepEqual(await ask(f.broker, 'cancel_consumer', { queue: 'celery' }, { limit: 1 }), [{ 'ts8@host': { ok: 'no longer consuming from celery' } }]);
    const r = await add.delay(2, 2);
    await sleep(300);
    assert.equal(await r.status(), 'PENDING', 'not consumed while cancelled');
    assert.deepEqual(await ask(f.broker, 'add_consumer', { queue: 'celery' }, { limit: 1 }), [{ 'ts8@host': { ok: 'add consumer celery' } }]);
    assert.equal(await r.get({ timeoutMs: 2000 }), 4);
    assert.deepEqual(await ask(f.broker, 'heartbeat', {}, { limit: 1 }), [{ 'ts8@host': null }]);
    assert.deepEqual(await ask(f.broker, 'enable_events', {}, { limit: 1 }), [{ 'ts8@host': { ok: 'task events enabled' } }]);
    await waitFor(() => (w as unknown as { events?: { taskEvents: boolean } }).events?.taskEvents === true, 3000, "enable_events turns the worker's task events on");
    assert.deepEqual(await ask(f.broker, 'disable_events', {}, { limit: 1 }), [{ 'ts8@host': { ok: 'task events disabled' } }]);
    await waitFor(() => (w as unknown as { events?: { taskEvents: boolean } }).events?.taskEvents === false, 3000, 'disable_events turns them off');
    assert.deepEqual(await ask(f.broker, 'shutdown', {}, { timeoutMs: 300 }), [], 'Celery sends no reply to shutdown');
    await w.done;
    await f.close();
  });

  it('tags every command inspect or control', () => {
    for (const [name, spec] of Object.entries(COMMANDS)) assert.ok(spec.cls === 'inspect' || spec.cls === 'control', name);
    for (const n of ['revoke', 'shutdown', 'rate_limit', 'pool_grow', 'add_consumer', 'enable_events']) assert.equal(COMMANDS[n]!.cls, 'control', n);
    for (const n of ['ping', 'stats', 'active', 'registered', 'conf']) assert.equal(COMMANDS[n]!.cls, 'inspect', n);
  });
});
