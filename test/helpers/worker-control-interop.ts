/**
 * Remote-control interop against real Python Celery 5.2.6, shared by the
 * Redis and RabbitMQ files (test/interop/{redis,amqp}/control.test.ts): a
 * Celeriac worker (solo pool, in this process) beside a Python worker,
 * driven by Celery's own `celery inspect`, `celery status`, `celery control`
 * and `app.control`, whose code decodes the replies.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { after, before, it } from 'node:test';
import type { TestContext } from 'node:test';
import { createApp, type App } from '../../src/client/app.ts';
import { createLogger } from '../../src/observability/logging.ts';
import { currentTask } from '../../src/worker/context.ts';
import { createWorker, type WorkerHandle } from '../../src/worker/worker.ts';
import { HARNESS_DIR, pyScript, startPythonWorker, type PythonWorker } from './python-celery.ts';
import { PYTHON, requireService, sleep, waitFor } from './services.ts';

export interface ControlInteropTarget {
  ready: () => boolean;
  what: string;
  /** Broker and backend URLs shared by both workers. */
  urls: () => { broker: string; backend: string };
}

/** Run Celery's CLI (`python3 -m celery -A harness_tasks …`); resolves stdout, even on a non-zero exit. */
export function celeryCli(args: string[], env: Record<string, string>, timeoutMs = 60_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(PYTHON, ['-m', 'celery', '-A', 'harness_tasks', ...args], { env: { ...process.env, PYTHONPATH: HARNESS_DIR, ...env }, timeout: timeoutMs, cwd: HARNESS_DIR }, (err, stdout, stderr) => {
      if (err && !stdout) reject(new Error(`celery ${args.join(' ')} failed: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

/** The JSON object a `celery inspect … --json` prints (last line). */
export function lastJson(out: string): Record<string, unknown> {
  return JSON.parse(out.trim().split('\n').pop()!) as Record<string, unknown>;
}

/** Define the cases (call inside a `describe`). */
export function controlInteropCases(target: ControlInteropTarget): void {
  const skip = (t: TestContext): boolean => !requireService(t, target.ready(), target.what);
  const suffix = randomUUID().slice(0, 8);
  const tsNode = `ts-${suffix}@ctl-interop`;
  const pyNode = `py-${suffix}@ctl-interop`;
  const queue = `ctl-interop-${suffix}`;
  let app: App | undefined;
  let worker: WorkerHandle | undefined;
  let py: PythonWorker | undefined;
  let env: Record<string, string> = {};
  const newWorker = async (): Promise<WorkerHandle> => {
    const w = createWorker({ app: app!, pool: 'solo', concurrency: 2, nodeName: tsNode, queues: [queue], shutdownTimeoutMs: 2000 });
    await w.start();
    return w;
  };

  before(async () => {
    if (!target.ready()) return;
    const { broker, backend } = target.urls();
    env = { CELERY_BROKER_URL: broker, CELERY_RESULT_BACKEND: backend };
    // Destructive commands are opt-in per deployment (docs/control-security.md); this cluster opts in.
    app = createApp({ brokerUrl: broker, resultBackend: backend, logger: createLogger({ level: 'silent' }), workerControlAllow: ['@all', 'no_such_cmd'] });
    app.task('tasks.sleep', async (s: number) => {
      const signal = currentTask()!.signal;
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(resolve, s * 1000);
        signal.addEventListener('abort', () => (clearTimeout(timer), reject(new Error('aborted'))));
      });
      return s;
    });
    app.task('tasks.add', (x: number, y: number) => x + y);
    worker = await newWorker();
    py = await startPythonWorker({ brokerUrl: broker, backendUrl: backend, name: pyNode, concurrency: 1, args: ['-Q', `py-${queue}`] });
  });
  after(async () => {
    await worker?.stop();
    await py?.stop();
    await app?.close();
  });

  /** Ask until both nodes answered (a pidbox consumer starts just after "ready"). */
  const inspectBoth = async (cmd: string): Promise<Record<string, unknown>> => {
    let got: Record<string, unknown> = {};
    for (let i = 0; i < 5; i++) {
      got = lastJson(await celeryCli(['inspect', cmd, '--json', '-t', '3'], env));
      if (tsNode in got && pyNode in got) break;
    }
    return got;
  };

  it('celery inspect ping and celery status list the Celeriac worker beside the Python one', async (t) => {
    if (skip(t)) return;
    const ping = await inspectBoth('ping');
    assert.deepEqual(ping[tsNode], { ok: 'pong' });
    assert.deepEqual(ping[pyNode], { ok: 'pong' });
    const status = await celeryCli(['status', '-t', '3'], env);
    assert.match(status, new RegExp(`${tsNode.replace(/[.@-]/g, '\\$&')}: OK`));
    assert.match(status, new RegExp(`${pyNode.replace(/[.@-]/g, '\\$&')}: OK`));
  });

  it('celery inspect registered, stats, active_queues and active decode the Celeriac replies', async (t) => {
    if (skip(t)) return;
    const reg = await inspectBoth('registered');
    assert.deepEqual(reg[tsNode], ['tasks.add', 'tasks.sleep']);
    const stats = (await inspectBoth('stats'))[tsNode] as Record<string, unknown>;
    assert.equal(stats.pid, process.pid);
    assert.equal((stats.pool as Record<string, unknown>)['max-concurrency'], 2);
    assert.ok('rusage' in stats && 'total' in stats && 'prefetch_count' in stats);
    const aq = (await inspectBoth('active_queues'))[tsNode] as Array<{ name: string }>;
    assert.deepEqual(aq.map((q) => q.name), [queue]);
    const r = await app!.sendTask('tasks.sleep', [8], {}, { queue });
    let active: Array<Record<string, unknown>> = [];
    await waitFor(async () => (active = (await inspectBoth('active'))[tsNode] as Array<Record<string, unknown>>).length === 1, 15_000, 'task active');
    assert.equal(active[0]!.id, r.id);
    assert.equal(active[0]!.name, 'tasks.sleep');
    assert.deepEqual(active[0]!.args, [8]);
    assert.equal(active[0]!.acknowledged, true);
    assert.equal(await r.get({ timeoutMs: 15_000 }), 8);
  });

  it('celery control revoke makes a Celeriac countdown task REVOKED (read by Celery\'s AsyncResult)', async (t) => {
    if (skip(t)) return;
    const r = await app!.sendTask('tasks.add', [1, 2], {}, { queue, countdown: 3 });
    await sleep(300);
    const out = await celeryCli(['control', 'revoke', r.id, '-t', '3'], env);
    assert.match(out, new RegExp(`${tsNode.replace(/[.@-]/g, '\\$&')}: OK`));
    assert.match(out, /flagged as revoked/);
    const state = await pyScript(`
from harness_tasks import app
import time
r = app.AsyncResult('${r.id}')
deadline = time.time() + 15
while r.state != 'REVOKED' and time.time() < deadline:
    time.sleep(0.2)
print(r.state)
`, env, 30_000);
    assert.equal(state.trim(), 'REVOKED');
  });

  it('app.control.revoke(terminate=True) stops a running Celeriac task: REVOKED terminated', async (t) => {
    if (skip(t)) return;
    const r = await app!.sendTask('tasks.sleep', [30], {}, { queue });
    await waitFor(async () => ((await inspectBoth('active'))[tsNode] as unknown[]).length === 1, 10_000, 'task active');
    const replies = JSON.parse((await pyScript(`
import json
from harness_tasks import app
print(json.dumps(app.control.revoke('${r.id}', terminate=True, signal='SIGTERM', reply=True, destination=['${tsNode}'], timeout=3)))
`, env, 30_000)).trim()) as unknown[];
    assert.deepEqual(replies, [{ [tsNode]: { ok: `terminate: ${r.id}` } }]);
    await assert.rejects(r.get({ timeoutMs: 10_000 }), (e: { state?: string; excMessage?: unknown[] }) => e.state === 'REVOKED' && e.excMessage?.[0] === 'terminated');
  });

  it('a revoke sent before a worker restart is honoured after it', async (t) => {
    if (skip(t)) return;
    await worker!.stop();
    const r = await app!.sendTask('tasks.add', [2, 2], {}, { queue, countdown: 2 });
    // The Celeriac worker is down: only the Python worker answers, and the broadcast is lost for Celeriac.
    // A Celeriac worker that was up stored it; here a second Celeriac node receives it and persists it.
    const helper = createWorker({ app: app!, pool: 'solo', concurrency: 1, nodeName: `helper-${suffix}@ctl-interop`, queues: [`${queue}-none`] });
    await helper.start();
    await celeryCli(['control', 'revoke', r.id, '-t', '2'], env);
    await helper.stop();
    worker = await newWorker();
    await assert.rejects(r.get({ timeoutMs: 10_000 }), { state: 'REVOKED' });
  });

  it('an unknown command gets kombu\'s error reply; shutdown stops the worker gracefully', async (t) => {
    if (skip(t)) return;
    const out = JSON.parse((await pyScript(`
import json
from harness_tasks import app
print(json.dumps(app.control.broadcast('no_such_cmd', reply=True, destination=['${tsNode}'], timeout=3)))
`, env, 30_000)).trim()) as unknown[];
    assert.deepEqual(out, [{ [tsNode]: { error: "KeyError('no_such_cmd')" } }]);
    // Celery sends no reply to shutdown (nor does `celery control shutdown` wait for one that comes).
    await pyScript(`
from harness_tasks import app
app.control.shutdown(destination=['${tsNode}'])
`, env, 30_000);
    await Promise.race([worker!.done, sleep(10_000).then(() => assert.fail('worker did not stop'))]);
    const ping = lastJson(await celeryCli(['inspect', 'ping', '--json', '-t', '2'], env));
    assert.ok(!(tsNode in ping), 'the stopped worker no longer answers');
    assert.ok(pyNode in ping, 'the Python worker still answers');
  });
}
