/**
 * Replay protection shared across worker processes through Redis
 * (`celeriac:replay:<nonce>`), with real `celeriac worker` processes:
 * copies of one signed message run once wherever they land, while the
 * broker's own redeliveries — after a crash (visibility-timeout restore)
 * and on shutdown (requeue) — still run.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createApp, type App } from '../../../src/client/app.ts';
import { generateSigningKey } from '../../../src/codec/signing/index.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { newId } from '../../../src/protocol/ids.ts';
import { startCeleriacWorker, type CeleriacWorkerProcess } from '../../helpers/celeriac-worker.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { requireService, sleep, waitFor } from '../../helpers/services.ts';

const SECURE_TASKS = new URL('./apps/secure_tasks.ts', import.meta.url).pathname;
const ring = generateSigningKey('ed25519', 'replay-k1');
const logger = createLogger({ level: 'silent' });

const ok = hasRedisServer();
let redis: RedisServer | undefined;
before(async () => {
  if (ok) redis = await startRedisServer();
});
after(async () => {
  await redis?.stop();
});

describe('replay protection across worker processes (Redis)', () => {
  const workers: CeleriacWorkerProcess[] = [];
  const clients: App[] = [];
  const start = async (db: number, extra: Record<string, string> = {}, args: string[] = ['-c', '2', '--processes', '1']): Promise<CeleriacWorkerProcess> => {
    const w = await startCeleriacWorker({
      module: SECURE_TASKS,
      args,
      env: { CELERIAC_BROKER_URL: redis!.url(db), CELERIAC_RESULT_BACKEND: redis!.url(db + 1), CELERIAC_VERIFY_KEYS: ring.verifyingLine, ...extra },
    });
    workers.push(w);
    return w;
  };
  const clientFor = (db: number): App => {
    const client = createApp({ brokerUrl: redis!.url(db), resultBackend: redis!.url(db + 1), logger, env: { NODE_ENV: 'test' }, securitySigningKeys: ring.signingLine });
    clients.push(client);
    return client;
  };
  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await Promise.all(workers.map((w) => w.stop()));
  });

  it('copies of one signed message delivered to two worker processes at once run once', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    const a = await start(0);
    const b = await start(0);
    const app = clientFor(0);
    const broker = await app.broker();
    const id = newId();
    const m = app.buildMessage({ task: 'tasks.sleep', id, args: [0.5], kwargs: {} });
    await broker.publishMany(Array.from({ length: 6 }, () => ({ queue: 'celery', message: { ...m, headers: structuredClone(m.headers), body: Buffer.from(m.body) } })));
    const r = (await app.asyncResult(id).get({ timeoutMs: 15_000 })) as { pid: number };
    const dlq = redis!.client(0);
    await waitFor(async () => (await dlq.llen('celery.dlq')) === 5, 15_000, 'five copies refused');
    const reasons = (await dlq.lrange('celery.dlq', 0, -1)).map((d) => (JSON.parse(d) as { reason: string }).reason);
    assert.ok(reasons.every((x) => /replayed message/.test(x)), reasons.join('; '));
    const ran = [a, b].flatMap((w) => w.logs()).filter((l) => l.securityEvent === 'replayed_message' && l.messageId === id).length;
    assert.equal(ran, 5, 'each refusal counted as a replayed_message event');
    assert.ok(typeof r.pid === 'number');
    assert.ok((await redis!.client(0).keys('celeriac:replay:*')).length >= 1, 'nonce state under celeriac:replay:');
  });

  it('a worker killed mid-task: the visibility-timeout restore is accepted by another worker (not a replay)', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    // Solo pool: the process that holds the nonce is the one killed. Short visibility timeout (and so a short lease).
    const env = { SEC_ACKS_LATE: '1', SEC_VISIBILITY: '3' };
    const doomed = await start(2, env, ['-P', 'solo', '-c', '1']);
    const app = clientFor(2);
    const id = newId();
    await app.sendTask('tasks.sleep', [4], {}, { taskId: id });
    await waitFor(async () => (await redis!.client(2).hlen('unacked')) === 1, 10_000, 'the task to be taken');
    await sleep(300);
    doomed.kill('SIGKILL');
    await doomed.exited;
    const survivor = await start(2, env, ['-P', 'solo', '-c', '1']);
    const r = (await app.asyncResult(id).get({ timeoutMs: 30_000 })) as { pid: number };
    assert.equal(r.pid, survivor.pid, 'the restored message ran on the surviving worker');
    assert.equal(await redis!.client(2).llen('celery.dlq'), 0, 'the redelivery was not refused as a replay');
  });

  it('a worker shut down while holding an ETA task requeues it; another worker runs it', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    const first = await start(4);
    const app = clientFor(4);
    const id = newId();
    await app.sendTask('tasks.sleep', [0], {}, { taskId: id, countdown: 4 });
    await waitFor(async () => (await redis!.client(4).hlen('unacked')) === 1, 10_000, 'the ETA task to be held');
    await first.stop();
    const second = await start(4);
    const r = (await app.asyncResult(id).get({ timeoutMs: 20_000 })) as { pid: number };
    assert.notEqual(r.pid, first.pid);
    assert.ok(second.pid > 0);
    assert.equal(await redis!.client(4).llen('celery.dlq'), 0);
  });
});
