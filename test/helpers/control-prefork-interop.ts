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
