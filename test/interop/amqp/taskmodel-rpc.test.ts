/**
 * `rpc://` results over RabbitMQ in Celery 5.2.6's format, both ways, on a
 * private vhost: a Celeriac worker replies to a Python rpc client; a
 * Celeriac rpc client gets results from a Python worker and from a
 * Celeriac worker (values, failures, PROGRESS states); the reply queue is
 * declared as Celery declares it.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createApp, type App } from '../../../src/client/app.ts';
import { RemoteTaskError } from '../../../src/errors.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { startCeleriacWorker, ROOT, type CeleriacWorkerProcess } from '../../helpers/celeriac-worker.ts';
import { pyScript, startPythonWorker, type PythonWorker } from '../../helpers/python-celery.ts';
import { hasPythonCelery, requireService } from '../../helpers/services.ts';
import { createTestVhost, hasRabbitmq, listQueues, type TestVhost } from '../../integration/amqp/support/rabbit.ts';

const TM_TASKS = `${ROOT}test/interop/apps/taskmodel_tasks.ts`;

/** Python rpc client: add, fail, and the PROGRESS states of tm.progress, all on the Celeriac worker's queue. */
const PY_RPC_CLIENT = `
import json, time
from harness_tasks import app
# Progress first: once a get() has started Python's rpc result consumer, polling .state no longer sees
# intermediate states (the consumer holds the queue) — with a Python worker just the same.
prog = app.send_task('tm.progress', args=[3, 0.6], queue='tsq')
seen = []
deadline = time.time() + 30
while time.time() < deadline:
    s = prog.state
    if s == 'PROGRESS' and prog.info not in seen:
        seen.append(prog.info)
    if s == 'SUCCESS':
        break
    time.sleep(0.02)
out = {'progress': seen, 'final': prog.get(timeout=10)}
add = app.send_task('tasks.add', args=[2, 3], queue='tsq')
fail = app.send_task('tasks.fail', args=['rpc boom'], queue='tsq')
out['add'] = add.get(timeout=20)
try:
    fail.get(timeout=20)
    out['fail'] = None
except Exception as e:
    out['fail'] = [type(e).__name__, list(e.args)]
print(json.dumps(out))
`;

describe('rpc:// results (RabbitMQ, Python Celery 5.2.6)', () => {
  const ready = hasRabbitmq() && hasPythonCelery();
  const logger = createLogger({ level: 'error' });
  let vh: TestVhost | undefined;
  let py: PythonWorker | undefined;
  let worker: CeleriacWorkerProcess | undefined;
  let app: App | undefined;

  before(async () => {
    if (!ready) return;
    vh = await createTestVhost('rpc');
    py = await startPythonWorker({ brokerUrl: vh.url(), backendUrl: 'rpc://', name: 'tm-rpc-py@localhost', args: ['-Q', 'pyq', '--include', 'taskmodel_tasks'] });
    worker = await startCeleriacWorker({ module: TM_TASKS, env: { CELERIAC_BROKER_URL: vh.url(), CELERIAC_RESULT_BACKEND: 'rpc://' }, args: ['-c', '4', '-Q', 'tsq', '-n', 'tm-rpc-ts@localhost'] });
    app = createApp({ brokerUrl: vh.url(), resultBackend: 'rpc://', logger });
  });
  after(async () => {
    await app?.close();
    await py?.stop();
    await worker?.stop();
    await vh?.delete();
  });

  it('a Celeriac worker replies to a Python rpc client: value, FAILURE, PROGRESS states', async (t) => {
    if (!requireService(t, ready, 'RabbitMQ and python3-celery')) return;
    const out = JSON.parse((await pyScript(PY_RPC_CLIENT, { CELERY_BROKER_URL: vh!.url(), CELERY_RESULT_BACKEND: 'rpc://' })).trim().split('\n').pop()!) as Record<string, unknown>;
    assert.equal(out.add, 5);
    assert.deepEqual(out.fail, ['ValueError', ['rpc boom']]);
    assert.deepEqual(out.progress, [1, 2, 3].map((current) => ({ current, total: 3 })));
    assert.equal(out.final, 'done');
  });

  it('a Celeriac rpc client gets results from a Python worker: value, FAILURE, PROGRESS states', async (t) => {
    if (!requireService(t, ready, 'RabbitMQ and python3-celery')) return;
    const add = await app!.sendTask('tasks.add', [40, 2], {}, { queue: 'pyq' });
    assert.equal(await add.get({ timeoutMs: 20_000 }), 42);
    const fail = await app!.sendTask('tasks.fail', ['py boom'], {}, { queue: 'pyq' });
    await assert.rejects(fail.get({ timeoutMs: 20_000 }), (err: unknown) => err instanceof RemoteTaskError && err.excType === 'ValueError' && err.excMessage[0] === 'py boom');
    const prog = await app!.sendTask('tm.progress', [3, 0.4], {}, { queue: 'pyq' });
    const seen: unknown[] = [];
    assert.equal(await prog.get({ timeoutMs: 20_000, onState: (m) => m.status === 'PROGRESS' && seen.push(m.result) }), 'done');
    assert.deepEqual(seen, [1, 2, 3].map((current) => ({ current, total: 3 })));
    // What rpc cannot do: a result this client did not receive reads as PENDING.
    assert.equal(await app!.asyncResult('not-a-task-of-this-client').status(), 'PENDING');
  });

  it('a Celeriac rpc client gets results from a Celeriac worker (delay, sendMany, failure)', async (t) => {
    if (!requireService(t, ready, 'RabbitMQ and python3-celery')) return;
    const one = await app!.sendTask('tasks.add', [1, 2], {}, { queue: 'tsq' });
    const many = await app!.sendMany([3, 4, 5].map((n) => ({ name: 'tasks.add', args: [n, n], options: { queue: 'tsq' } })));
    assert.equal(await one.get({ timeoutMs: 20_000 }), 3);
    assert.deepEqual(await Promise.all(many.map((r) => r.get({ timeoutMs: 20_000 }))), [6, 8, 10]);
    const fail = await app!.sendTask('tasks.fail', ['ts boom'], {}, { queue: 'tsq' });
    await assert.rejects(fail.get({ timeoutMs: 20_000 }), (err: unknown) => err instanceof RemoteTaskError && err.excType === 'ValueError');
    // The value stays readable once received (the local copy).
    assert.equal(await one.status(), 'SUCCESS');
  });

  it('a task whose prefork child dies: the supervisor\'s FAILURE WorkerLostError reaches the rpc caller', async (t) => {
    if (!requireService(t, ready, 'RabbitMQ and python3-celery')) return;
    const res = await app!.sendTask('tm.crash', [], {}, { queue: 'tsq' });
    await assert.rejects(res.get({ timeoutMs: 30_000 }), (err: unknown) => err instanceof RemoteTaskError && err.excType === 'WorkerLostError');
    // The pool is whole again: the next task runs.
    const after = await app!.sendTask('tasks.add', [2, 2], {}, { queue: 'tsq' });
    assert.equal(await after.get({ timeoutMs: 30_000 }), 4);
  });

  it('a poison message from a Python rpc client: the dead-letter FAILURE reaches it through its reply queue', async (t) => {
    if (!requireService(t, ready, 'RabbitMQ and python3-celery')) return;
    const code = `
import json, time
from harness_tasks import app
t0 = time.time()
r = app.send_task('tasks.add', args=[1, 2], queue='tsq', serializer='pickle')
try:
    r.get(timeout=30)
    out = {'state': r.state}
except Exception as e:
    out = {'exc': [type(e).__module__, type(e).__name__]}
out['seconds'] = time.time() - t0
print(json.dumps(out))
`;
    const out = JSON.parse((await pyScript(code, { CELERY_BROKER_URL: vh!.url(), CELERY_RESULT_BACKEND: 'rpc://' })).trim().split('\n').pop()!) as { exc?: string[]; seconds: number };
    assert.deepEqual(out.exc, ['kombu.exceptions', 'ContentDisallowed'], JSON.stringify(out));
    assert.ok(out.seconds < 10, `after ${out.seconds} s`);
  });

  it("the client's reply queue is declared as Celery's rpc backend declares it", async (t) => {
    if (!requireService(t, ready, 'RabbitMQ and python3-celery')) return;
    const queues = await listQueues(vh!.vhost);
    const oid = (await (await app!.resultStore())!.backend.replyRoute!());
    const q = queues.find((x) => x.name === oid);
    assert.ok(q, `reply queue ${oid} among ${queues.map((x) => x.name).join(', ')}`);
    assert.equal(q.durable, false);
    assert.equal(q.auto_delete, true);
    assert.equal(q.exclusive, false);
    assert.deepEqual(q.arguments, { 'x-expires': 86_400_000 });
  });
});
