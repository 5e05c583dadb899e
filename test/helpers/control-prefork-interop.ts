/**
 * Remote control of a `celeriac worker` process with the default prefork
 * pool (the supervisor answers for the node; its children honour revokes),
 * driven by Python Celery 5.2.6's own tools: the cases every broker runs
 * (test/interop/{redis,amqp}/control-prefork.test.ts).
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startCeleriacWorker, type CeleriacWorkerProcess } from './celeriac-worker.ts';
import { celeryCli, lastJson } from './worker-control-interop.ts';
import { pyScript } from './python-celery.ts';
import { requireService, sleep } from './services.ts';

/** One broker for the cases: whether it can run, what it needs, and its URLs (set up once, torn down after). */
export interface ControlPreforkTarget {
  what: string;
  ready: boolean;
  needs: string;
  setup(): Promise<{ brokerUrl: string; backendUrl: string }>;
  teardown(): Promise<void>;
}

export function controlPreforkCases(target: ControlPreforkTarget): void {
  describe(`remote control of a prefork celeriac worker by Python Celery (${target.what})`, () => {
    const ready = target.ready;
    const node = `pre-${randomUUID().slice(0, 8)}@ctl-interop`;
    const queue = `ctl-prefork-${randomUUID().slice(0, 8)}`;
    let worker: CeleriacWorkerProcess | undefined;
    let env: Record<string, string> = {};
    before(async () => {
      if (!ready) return;
      const { brokerUrl, backendUrl } = await target.setup();
      env = { CELERY_BROKER_URL: brokerUrl, CELERY_RESULT_BACKEND: backendUrl, CELERY_DEFAULT_QUEUE: queue };
      // Destructive commands are opt-in per deployment (docs/control-security.md); this worker opts in.
      worker = await startCeleriacWorker({ env: { CELERIAC_WORKER_CONTROL_ALLOW: '@all', CELERIAC_BROKER_URL: brokerUrl, CELERIAC_RESULT_BACKEND: backendUrl }, args: ['-c', '2', '-n', node, '-Q', queue] });
    });
    after(async () => {
      await worker?.stop();
      await target.teardown();
    });

    it('answers ping and stats once for the node; revoke makes a countdown task REVOKED', async (t) => {
      if (!requireService(t, ready, target.needs)) return;
      let ping: Record<string, unknown> = {};
      for (let i = 0; i < 5 && !(node in ping); i++) ping = lastJson(await celeryCli(['inspect', 'ping', '--json', '-t', '2', '-d', node], env));
      assert.deepEqual(ping, { [node]: { ok: 'pong' } });
      const stats = lastJson(await celeryCli(['inspect', 'stats', '--json', '-t', '2', '-d', node], env))[node] as { pool: { processes: number[] } };
      assert.ok(stats.pool.processes.length >= 1);
      const state = await pyScript(`
import time, subprocess, sys
from harness_tasks import app
r = app.send_task('tasks.add', (1, 2), countdown=3, queue='${queue}')
time.sleep(0.5)
print(app.control.revoke(r.id, reply=True, destination=['${node}'], timeout=2), file=sys.stderr)
deadline = time.time() + 15
while r.state != 'REVOKED' and time.time() < deadline:
    time.sleep(0.2)
print(r.state)
  `, env, 30_000);
      assert.equal(state.trim(), 'REVOKED');
    });

    it('revoke with terminate and SIGKILL kills the task\'s process through the supervisor: REVOKED terminated, the pool recovers', async (t) => {
      if (!requireService(t, ready, target.needs)) return;
      const out = await pyScript(`
import json, time, sys
from harness_tasks import app
r = app.send_task('tasks.sleep', (60,), queue='${queue}')
deadline = time.time() + 20
while time.time() < deadline:
    active = (app.control.inspect(destination=['${node}'], timeout=1).active() or {}).get('${node}', [])
    if any(a['id'] == r.id for a in active):
        break
print(app.control.revoke(r.id, terminate=True, signal='SIGKILL', reply=True, destination=['${node}'], timeout=2), file=sys.stderr)
deadline = time.time() + 20
while r.state != 'REVOKED' and time.time() < deadline:
    time.sleep(0.2)
print(json.dumps({'state': r.state, 'result': repr(r.result)}))
  `, env, 60_000);
      const got = JSON.parse(out.trim().split('\n').pop()!) as { state: string; result: string };
      assert.equal(got.state, 'REVOKED');
      assert.match(got.result, /terminated/);
      // A new process took the killed one's place: tasks still run.
      const add = await pyScript(`
from harness_tasks import app
print(app.send_task('tasks.add', (2, 3), queue='${queue}').get(timeout=20))
  `, env, 60_000);
      assert.equal(add.trim(), '5');
    });

    it('celery inspect reserved/scheduled gather the children\'s tasks; celery control pool_grow, rate_limit, time_limit, add_consumer, enable_events reach them', async (t) => {
      if (!requireService(t, ready, target.needs)) return;
      const inspect = async (cmd: string): Promise<unknown> => lastJson(await celeryCli(['inspect', cmd, '--json', '-t', '2', '-d', node], env))[node];
      const control = (args: string[]): Promise<string> => celeryCli(['control', ...args, '-t', '2', '-d', node], env);
      const sent = JSON.parse((await pyScript(`
import json
from harness_tasks import app
naps = [app.send_task('tasks.sleep', (3,), queue='${queue}').id for _ in range(4)]
later = app.send_task('tasks.add', (1, 2), countdown=60, queue='${queue}').id
print(json.dumps({'naps': naps, 'later': later}))
  `, env)).trim().split('\n').pop()!) as { naps: string[]; later: string };
      // Two run (-c 2), two wait: together the node's lists hold all four, decoded by Celery's own code.
      let listed: string[] = [];
      for (let i = 0; i < 10 && listed.length < 4; i++) {
        const [active, reserved] = (await Promise.all([inspect('active'), inspect('reserved')])) as Array<Array<{ id: string }>>;
        listed = [...(active ?? []), ...(reserved ?? [])].map((x) => x.id).filter((id) => sent.naps.includes(id));
      }
      assert.deepEqual(listed.sort(), [...sent.naps].sort());
      const scheduled = (await inspect('scheduled')) as Array<{ request: { id: string } }>;
      assert.deepEqual(scheduled.map((x) => x.request.id), [sent.later]);
      assert.match(await control(['pool_grow', '2']), /pool will grow/);
      assert.equal(((await inspect('stats')) as { pool: { 'max-concurrency': number } }).pool['max-concurrency'], 4);
      assert.match(await control(['pool_shrink', '2']), /pool will shrink/);
      assert.match(await control(['rate_limit', 'tasks.add', '100/m']), /new rate limit set successfully/);
      assert.match(await control(['time_limit', 'tasks.sleep', '20', '30']), /time limits set successfully/);
      assert.match(await control(['add_consumer', `${queue}-more`]), new RegExp(`add consumer ${queue}-more`));
      assert.deepEqual(((await inspect('active_queues')) as Array<{ name: string }>).map((q) => q.name), [queue, `${queue}-more`]);
      const more = await pyScript(`
from harness_tasks import app
print(app.send_task('tasks.add', (20, 22), queue='${queue}-more').get(timeout=20))
  `, env, 60_000);
      assert.equal(more.trim(), '42');
      assert.match(await control(['cancel_consumer', `${queue}-more`]), /no longer consuming/);
      assert.match(await control(['enable_events']), /task events enabled/);
      assert.match(await control(['disable_events']), /task events disabled/);
      assert.match(await control(['revoke', sent.later]), /flagged as revoked/);
    });

    it('shutdown stops the worker process cleanly', async (t) => {
      if (!requireService(t, ready, target.needs)) return;
      await pyScript(`
from harness_tasks import app
app.control.shutdown(destination=['${node}'])
  `, env);
      const code = await Promise.race([worker!.exited, sleep(20_000).then(() => 'timeout')]);
      assert.equal(code, 0, 'the worker exited cleanly');
    });
  });
}
