/**
 * One Redis queue served by a Python Celery worker and a Celeriac worker at
 * once (each task exactly once), and late-ack redelivery when a worker is
 * killed with SIGKILL mid-task — in both directions, since both sides read
 * kombu's `unacked` bookkeeping.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createApp, type App } from '../../../src/client/app.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { startCeleriacWorker, type CeleriacWorkerProcess } from '../../helpers/celeriac-worker.ts';
import { startPythonWorker, type PythonWorker } from '../../helpers/python-celery.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { hasPythonCelery, requireService, waitFor } from '../../helpers/services.ts';

const ready = hasRedisServer() && hasPythonCelery();
const logger = createLogger({ level: 'warn' });

describe('mixed Python + Celeriac pool on one queue', () => {
  let redis: RedisServer | undefined;
  let py: PythonWorker | undefined;
  let ts: CeleriacWorkerProcess | undefined;
  let app: App | undefined;

  before(async () => {
    if (!ready) return;
    redis = await startRedisServer();
    py = await startPythonWorker({ brokerUrl: redis.url(0), backendUrl: redis.url(1), env: { CELERY_RESULT_EXTENDED: '1' }, concurrency: 2 });
    ts = await startCeleriacWorker({
      env: { CELERIAC_BROKER_URL: redis.url(0), CELERIAC_RESULT_BACKEND: redis.url(1), CELERIAC_RESULT_EXTENDED: '1', CELERIAC_LOG_LEVEL: 'debug' },
      args: ['-c', '4', '-n', 'tsworker@localhost'],
    });
    app = createApp({ brokerUrl: redis.url(0), resultBackend: redis.url(1), logger });
  });
  after(async () => {
    await app?.close();
    await ts?.stop();
    await py?.stop();
    await redis?.stop();
  });

  it('1,000 tasks: every one run exactly once, every result correct', async (t) => {
    if (!requireService(t, ready, 'redis-server and python3-celery')) return;
    const results = [];
    for (let b = 0; b < 10; b++) {
      results.push(...(await app!.sendMany(Array.from({ length: 100 }, (_, i) => ({ name: 'tasks.add', args: [b * 100 + i, 1] })))));
    }
    const metas = await Promise.all(
      results.map(async (r, i) => {
        assert.equal(await r.get({ timeoutMs: 120_000 }), i + 1);
        return r.meta();
      }),
    );
    const byWorker = new Map<string, number>();
    for (const m of metas) byWorker.set(String(m.worker), (byWorker.get(String(m.worker)) ?? 0) + 1);
    t.diagnostic(`runs per worker: ${JSON.stringify(Object.fromEntries(byWorker))}`);
    assert.ok((byWorker.get('pyworker@localhost') ?? 0) > 0, 'the Python worker took part');
    assert.ok((byWorker.get('tsworker@localhost') ?? 0) > 0, 'the Celeriac worker took part');

    // Exactly once: count executions in both workers' logs.
    const ids = new Set(results.map((r) => r.id));
    const runs = (): string[] => {
      const pyRuns = [...py!.output().matchAll(/Task tasks\.add\[([0-9a-f-]{36})\] succeeded/g)].map((m) => m[1]!);
      const tsRuns = ts!.logs().filter((l) => l.msg === 'task succeeded').map((l) => String(l.id));
      return [...pyRuns, ...tsRuns].filter((id) => ids.has(id));
    };
    // Log lines of worker processes arrive asynchronously: wait for them to be flushed.
    await waitFor(() => runs().length >= 1000, 10_000, 'every execution logged').catch(() => undefined);
    await new Promise((r) => setTimeout(r, 500));
    const all = runs();
    assert.equal(all.length, 1000, `executions logged: ${all.length}`);
    assert.equal(new Set(all).size, 1000, 'no task ran twice');
  });
});

describe('acksLate: a worker killed mid-task loses nothing', () => {
  let redis: RedisServer | undefined;
  let app: App | undefined;
  const started: Array<{ stop(): Promise<unknown> }> = [];

  before(async () => {
    if (!ready) return;
    redis = await startRedisServer();
    app = createApp({ brokerUrl: redis.url(0), resultBackend: redis.url(1), logger, resultExtended: true });
  });
  after(async () => {
    await app?.close();
    await Promise.all(started.map((w) => w.stop()));
    await redis?.stop();
  });

  const env = (): Record<string, string> => ({
    CELERIAC_BROKER_URL: redis!.url(0),
    CELERIAC_RESULT_BACKEND: redis!.url(1),
    CELERIAC_ACKS_LATE: '1',
    CELERIAC_VISIBILITY: '2',
    CELERIAC_RESULT_EXTENDED: '1',
    CELERIAC_LOG_LEVEL: 'debug',
  });

  it('Celeriac worker SIGKILLed: the task runs again on another worker after the visibility timeout', async (t) => {
    if (!requireService(t, ready, 'redis-server and python3-celery')) return;
    const a = await startCeleriacWorker({ env: env(), args: ['-c', '1', '-n', 'victim@localhost'] });
    started.push(a);
    const r = await app!.sendTask('tasks.sleep', [3]);
    await waitFor(() => a.logs().some((l) => l.msg === 'task received' && l.id === r.id), 10_000, 'victim received the task');
    a.kill('SIGKILL');
    await a.exited;
    const unacked = await redis!.client(0).hlen('unacked');
    assert.equal(unacked, 1, 'the taken message is recorded in kombu\'s unacked hash');
    const b = await startCeleriacWorker({ env: env(), args: ['-c', '1', '-n', 'rescuer@localhost'] });
    started.push(b);
    assert.equal(await r.get({ timeoutMs: 30_000 }), 3);
    assert.equal((await r.meta()).worker, 'rescuer@localhost');
    await b.stop();
  });

  it('Python worker SIGKILLed: the Celeriac worker restores its unacked message and runs it', async (t) => {
    if (!requireService(t, ready, 'redis-server and python3-celery')) return;
    const py = await startPythonWorker({ brokerUrl: redis!.url(0), backendUrl: redis!.url(1), env: { CELERY_ACKS_LATE: '1' }, concurrency: 1, name: 'pyvictim@localhost' });
    started.push(py);
    const r = await app!.sendTask('tasks.sleep', [4]);
    await waitFor(() => py.output().includes(r.id), 15_000, 'python received the task');
    py.kill('SIGKILL');
    await py.exited;
    const tags = await redis!.client(0).hkeys('unacked');
    assert.equal(tags.length, 1, 'python recorded the delivery in unacked');
    const b = await startCeleriacWorker({ env: env(), args: ['-c', '1', '-n', 'tsrescuer@localhost'] });
    started.push(b);
    await waitFor(() => b.logs().some((l) => l.msg === 'task received' && l.id === r.id), 30_000, 'celeriac restored and received the task');
    assert.equal(await r.get({ timeoutMs: 30_000 }), 4);
    await b.stop();
  });
});
