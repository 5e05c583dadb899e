/**
 * One RabbitMQ queue served by a Python Celery worker and a Celeriac worker
 * at once: 1,000 tasks, each run exactly once, every result correct; then
 * Celeriac's consumer connections are closed by force mid-run (what
 * `rabbitmqctl close_connection` does to a misbehaving client): the worker
 * reconnects and the run completes.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createApp, type App } from '../../../src/client/app.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { startCeleriacWorker, type CeleriacWorkerProcess } from '../../helpers/celeriac-worker.ts';
import { startPythonWorker, type PythonWorker } from '../../helpers/python-celery.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { hasPythonCelery, requireService, waitFor } from '../../helpers/services.ts';
import { closeConnection, connectionsOf, createTestVhost, hasRabbitmq, type TestVhost } from '../../integration/amqp/support/rabbit.ts';

const ready = hasRabbitmq() && hasRedisServer() && hasPythonCelery();
const logger = createLogger({ level: 'error' });

describe('mixed Python + Celeriac pool on one RabbitMQ queue', () => {
  let vh: TestVhost | undefined;
  let redis: RedisServer | undefined;
  let py: PythonWorker | undefined;
  let ts: CeleriacWorkerProcess | undefined;
  let tsUser: { user: string; url: string } | undefined;
  let app: App | undefined;

  before(async () => {
    if (!ready) return;
    vh = await createTestVhost('mixed');
    redis = await startRedisServer();
    // The Celeriac worker logs in as a user of its own, so its connections are easy to find (and close).
    tsUser = await vh.addUser({ configure: '.*', write: '.*', read: '.*' });
    py = await startPythonWorker({ brokerUrl: vh.url(), backendUrl: redis.url(1), env: { CELERY_RESULT_EXTENDED: '1' }, concurrency: 2 });
    ts = await startCeleriacWorker({
      env: { CELERIAC_BROKER_URL: tsUser.url, CELERIAC_RESULT_BACKEND: redis.url(1), CELERIAC_RESULT_EXTENDED: '1', CELERIAC_LOG_LEVEL: 'debug' },
      args: ['-c', '4', '-n', 'tsworker@localhost'],
    });
    app = createApp({ brokerUrl: vh.url(), resultBackend: redis.url(1), logger });
  });
  after(async () => {
    await app?.close();
    await ts?.stop();
    await py?.stop();
    await redis?.stop();
    await vh?.delete();
  });

  const pyRuns = (): string[] => [...py!.output().matchAll(/Task tasks\.(?:add|sleep)\[([0-9a-f-]{36})\] succeeded/g)].map((m) => m[1]!);
  const tsRuns = (): string[] => ts!.logs().filter((l) => l.msg === 'task succeeded').map((l) => String(l.id));

  it('1,000 tasks: every one run exactly once, every result correct', async (t) => {
    if (!requireService(t, ready, 'RabbitMQ, redis-server and python3-celery')) return;
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
    const ids = new Set(results.map((r) => r.id));
    // Python logs "succeeded" a moment after storing the result: let the last lines arrive.
    await waitFor(() => [...pyRuns(), ...tsRuns()].filter((id) => ids.has(id)).length >= 1000, 10_000, 'all executions logged');
    const all = [...pyRuns(), ...tsRuns()].filter((id) => ids.has(id));
    assert.equal(all.length, 1000, `executions: python ${pyRuns().length}, celeriac ${tsRuns().length}`);
    assert.equal(new Set(all).size, 1000, 'no task ran twice');
  });

  it("Celeriac's consumer connections closed by force mid-run: the worker reconnects and the run completes", async (t) => {
    if (!requireService(t, ready, 'RabbitMQ, redis-server and python3-celery')) return;
    const before = new Set(tsRuns());
    const N = 600;
    const results = await app!.sendMany(Array.from({ length: N }, () => ({ name: 'tasks.sleep', args: [0.05] })));
    const ids = new Set(results.map((r) => r.id));
    await waitFor(() => tsRuns().filter((id) => ids.has(id)).length >= 20, 30_000, 'the Celeriac worker is busy');
    const conns = (await connectionsOf(tsUser!.user)).filter((c) => c.name.includes('consumer'));
    assert.ok(conns.length > 0, 'Celeriac consumer connections listed');
    await Promise.all(conns.map((c) => closeConnection(c.pid, 'test: closed by an operator')));
    const doneAtClose = tsRuns().filter((id) => ids.has(id)).length;
    await Promise.all(results.map((r) => r.get({ timeoutMs: 120_000 })));
    // It came back: new consumer connections, and it ran tasks after the close.
    const after = (await connectionsOf(tsUser!.user)).filter((c) => c.name.includes('consumer'));
    assert.ok(after.length > 0 && after.every((c) => !conns.some((o) => o.pid === c.pid)), 'new consumer connections');
    const tsAfter = tsRuns().filter((id) => ids.has(id) && !before.has(id));
    assert.ok(tsAfter.length > doneAtClose, `Celeriac ran tasks after the close (${doneAtClose} before, ${tsAfter.length} in all)`);
    assert.ok(ts!.output().includes('re-established'), 'reconnect logged');
    await waitFor(() => new Set([...pyRuns(), ...tsRuns()].filter((id) => ids.has(id))).size >= N, 10_000, 'all executions logged');
    const runs = [...pyRuns(), ...tsRuns().filter((id) => !before.has(id))].filter((id) => ids.has(id));
    const seen = new Map<string, number>();
    for (const id of runs) seen.set(id, (seen.get(id) ?? 0) + 1);
    const dups = [...seen.values()].filter((n) => n > 1).length;
    t.diagnostic(`closed ${conns.length} consumer connection(s); ${N} tasks done; ${dups} ran twice (in flight at the close, requeued by RabbitMQ)`);
    assert.equal(seen.size, N, 'every task ran');
  });
});
