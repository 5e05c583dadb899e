/**
 * The replay guard's nonce state machine (replay-guard.ts): replays and
 * concurrent copies refused, legitimate redeliveries accepted — requeue on
 * shutdown, a dead holder on this host, a lease that ran out. The stores
 * themselves are checked by test/conformance/replay-store.ts on every engine.
 */
import assert from 'node:assert/strict';
import { hostname } from 'node:os';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { generateSigningKey } from '../../../src/codec/signing/index.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import type { WireMessage } from '../../../src/protocol/types.ts';
import { resetSecurityEvents } from '../../../src/observability/security-events.ts';
import { REPLAY_HELD_REASON, REPLAY_SETTLED_REASON, ReplayGuard } from '../../../src/security/replay-guard.ts';
import { MemoryReplayStore } from '../../../src/transport/memory/replay-store.ts';
import { memoryServer, sleep, until, type MemoryServer } from './helpers.ts';

const logger = createLogger({ level: 'silent' });
const msg = (): WireMessage => ({ headers: {}, properties: {}, contentType: 'application/json', contentEncoding: 'utf-8', body: Buffer.from('[]') });

describe('ReplayGuard', () => {
  it('admits once, refuses a concurrent copy and a replay after settle', async () => {
    const store = new MemoryReplayStore();
    const a = new ReplayGuard({ store: async () => store, clockSkewMs: 1000, logger });
    const b = new ReplayGuard({ store: async () => store, clockSkewMs: 1000, logger });
    const exp = Date.now() + 60_000;
    const m1 = msg();
    assert.equal(await a.admit(m1, 'nonce-1', exp, false), undefined);
    assert.equal(await b.admit(msg(), 'nonce-1', exp, false), REPLAY_HELD_REASON, 'a copy while the first is in flight');
    a.settled(m1);
    await until(async () => (await store.claim('nonce-1', 'probe:1:x', 1000)).state === 'settled');
    assert.equal(await b.admit(msg(), 'nonce-1', exp, true), REPLAY_SETTLED_REASON, 'even flagged redelivered, a settled nonce is a replay');
    await a.close();
    await b.close();
  });

  it('released before a requeue: the redelivery is admitted elsewhere', async () => {
    const store = new MemoryReplayStore();
    const a = new ReplayGuard({ store: async () => store, clockSkewMs: 1000, logger });
    const b = new ReplayGuard({ store: async () => store, clockSkewMs: 1000, logger });
    const m = msg();
    const exp = Date.now() + 60_000;
    await a.admit(m, 'nonce-2', exp, false);
    a.released(m);
    assert.equal(await b.admit(msg(), 'nonce-2', exp, true), undefined);
    await a.close();
    await b.close();
  });

  it('a dead holder on this host is taken over at once; a live foreign holder is waited for until its lease ends, then refused', async () => {
    const store = new MemoryReplayStore();
    const exp = Date.now() + 60_000;
    // Holder ids name host and pid: a process that no longer exists.
    await store.claim('nonce-3', `${hostname()}:999999:dead`, 60_000);
    const g = new ReplayGuard({ store: async () => store, clockSkewMs: 1000, logger, isAlive: () => false, leaseMs: 400, redeliveryRetryMs: 50 });
    const t0 = Date.now();
    assert.equal(await g.admit(msg(), 'nonce-3', exp, true), undefined);
    assert.ok(Date.now() - t0 < 200, 'no waiting for a provably dead holder');
    // Not redelivered: refused at once even if the holder is dead (an attacker copy while the original is held elsewhere).
    await store.claim('nonce-4', `${hostname()}:999999:dead`, 60_000);
    assert.equal(await g.admit(msg(), 'nonce-4', exp, false), REPLAY_HELD_REASON);
    // A live holder on another host keeps refreshing: the redelivered copy waits about one lease, then is refused.
    await store.claim('nonce-5', 'other-host:1:live', 60_000);
    const t1 = Date.now();
    assert.equal(await g.admit(msg(), 'nonce-5', exp, true), REPLAY_HELD_REASON);
    assert.ok(Date.now() - t1 >= 400, 'waited for the lease');
    // The same holder on another host that dies: its lease runs out and the redelivery gets through.
    await store.claim('nonce-6', 'other-host:2:dying', 300);
    assert.equal(await g.admit(msg(), 'nonce-6', exp, true), undefined);
    await g.close();
  });

  it('keeps holds alive while held (ETA tasks) and releases them all on close', async () => {
    const store = new MemoryReplayStore();
    const g = new ReplayGuard({ store: async () => store, clockSkewMs: 1000, logger, leaseMs: 300 });
    await g.admit(msg(), 'nonce-7', Date.now() + 60_000, false);
    await sleep(700);
    assert.equal((await store.claim('nonce-7', 'x:1:y', 1000)).state, 'held', 'refreshed past its first lease');
    await g.close();
    assert.equal((await store.claim('nonce-7', 'x:1:y', 1000)).state, 'claimed', 'released on close');
  });
});

describe('redeliveries through real workers (memory broker, shared replay store)', () => {
  const ring = generateSigningKey('ed25519', 'k1');
  let server: MemoryServer;
  beforeEach(() => {
    resetSecurityEvents();
    server = memoryServer();
  });
  afterEach(async () => {
    await server.close();
  });

  it('a message held (ETA) by a worker that shuts down is requeued, released, and runs on the next worker', async () => {
    const shared = new MemoryReplayStore();
    const opts = { securitySigningKeys: ring.signingLine, securityReplayStore: shared };
    const client = server.app(opts);
    const first = server.app(opts);
    let ranOn = '';
    first.app.task('tasks.where', () => (ranOn = 'first'));
    const w1 = await server.worker(first.app);
    const r = await client.app.sendTask('tasks.where', [], {}, { countdown: 0.6, taskId: 'eta-requeue-1' });
    await until(() => w1.stats().held === 1, 3000, 'the ETA task to be held');
    await w1.stop(); // requeues the held ETA message (and releases its nonce first)
    const second = server.app(opts);
    second.app.task('tasks.where', () => (ranOn = 'second'));
    await server.worker(second.app);
    assert.equal(await r.get({ timeoutMs: 5000 }), 'second');
    assert.equal(ranOn, 'second');
    assert.equal((await client.broker.deadLetters('celery')).length, 0, 'the redelivery was not taken for a replay');
  });

  it('a requeued copy on the same worker (lost child with rejectOnWorkerLost) is admitted again', async () => {
    const opts = { securitySigningKeys: ring.signingLine, taskAcksLate: true };
    const app = server.app(opts);
    let runs = 0;
    app.app.task('tasks.once', () => ++runs);
    await server.worker(app.app);
    const m = app.app.buildMessage({ task: 'tasks.once', id: 'requeue-same', args: [], kwargs: {} });
    // Deliver, then requeue it the way the worker does for a lost child: released, then reject(true).
    const sec = app.app.security;
    const broker = app.broker;
    let got: { message: WireMessage; reject(r: boolean): Promise<void> } | undefined;
    const consumer = await broker.consume(['side'], { prefetch: 1 }, (d) => (got = d));
    await broker.publish('side', m);
    await until(() => got !== undefined);
    const req = (await import('../../../src/protocol/task-message.ts')).parseTaskMessage(got!.message, app.app.decodeBody);
    assert.equal(await sec.admit!(got!.message, req, { redelivered: false, deliveryTag: 't1' }), undefined);
    sec.released!(got!.message);
    await consumer.cancel();
    await got!.reject(true);
    // The normal worker consumes 'celery'; move the message there and let it run.
    await broker.publish('celery', got!.message);
    assert.equal(await app.app.asyncResult('requeue-same').get({ timeoutMs: 5000 }), 1);
    assert.equal(runs, 1);
  });
});
