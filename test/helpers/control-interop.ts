/**
 * The operator's API and CLI against a real Python Celery 5.2.6 worker
 * (it answers pidbox), shared by test/interop/{redis,amqp}/control.test.ts:
 * `app.control.inspect()` decodes Python's replies, `revoke` reaches it,
 * `celeriac inspect ping --json` and `celeriac status` list it.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { after, before, it } from 'node:test';
import type { TestContext } from 'node:test';
import { createApp, type App } from '../../src/client/app.ts';
import type { Broker } from '../../src/core/broker.ts';
import { CLI, ROOT } from './celeriac-worker.ts';
import { startPythonWorker, type PythonWorker } from './python-celery.ts';
import { requireService } from './services.ts';

export interface ControlInteropTarget {
  ready: () => boolean;
  what: string;
  /** A Celeriac broker on the shared broker (the suite closes it). */
  broker: () => Promise<Broker>;
  /** Broker and result URLs for the Python worker and the CLI. */
  urls: () => { broker: string; backend: string };
}

/** Run the celeriac CLI; resolves with its exit code and output. */
export function runCli(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { cwd: ROOT, env: { ...process.env, CELERIAC_ENV: 'development', CELERIAC_LOG_LEVEL: 'error', ...env }, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

/** Define the cases (call inside a `describe`); one Python worker serves them all. */
export function controlInteropCases(target: ControlInteropTarget): void {
  const skip = (t: TestContext): boolean => !requireService(t, target.ready(), target.what);
  const node = `py-${randomUUID().slice(0, 8)}@control-interop`;
  const queue = `control-interop-${randomUUID().slice(0, 8)}`;
  let worker: PythonWorker | undefined;
  let app: App | undefined;

  before(async () => {
    if (!target.ready()) return;
    const { broker, backend } = target.urls();
    worker = await startPythonWorker({ brokerUrl: broker, backendUrl: backend, name: node, concurrency: 1, args: ['-Q', queue] });
    app = createApp({ broker: await target.broker() });
    // The worker's pidbox consumer may start just after "ready": wait until it answers.
    for (let i = 0; i < 20; i++) {
      if (Object.keys(await app.control.inspect({ destination: [node], timeoutMs: 1000 }).ping()).length) break;
    }
  });
  after(async () => {
    await app?.close();
    await worker?.stop();
  });

  it("app.control.inspect() decodes a Python worker's ping, stats, registered and active_queues", async (t) => {
    if (skip(t)) return;
    const inspect = app!.control.inspect({ destination: [node], timeoutMs: 5000 });
    assert.deepEqual(await inspect.ping(), { [node]: { ok: 'pong' } });
    const stats = (await inspect.stats())[node] as { pid: number; pool: { 'max-concurrency': number }; broker: { transport: string }; total: Record<string, number> };
    assert.equal(typeof stats.pid, 'number');
    assert.equal(stats.pool['max-concurrency'], 1);
    assert.match(stats.broker.transport, /redis|amqp/);
    const registered = (await inspect.registered())[node] as string[];
    assert.ok(registered.includes('tasks.add'), `registered: ${registered.join(', ')}`);
    const queues = (await inspect.activeQueues())[node] as Array<{ name: string }>;
    assert.deepEqual(queues.map((q) => q.name), [queue]);
    assert.deepEqual((await inspect.scheduled())[node], []);
  });

  it('revoke reaches the Python worker: it replies "flagged as revoked" and lists the id', async (t) => {
    if (skip(t)) return;
    const id = randomUUID();
    const replies = await app!.control.revoke(id, { reply: true, destination: [node], timeoutMs: 5000 });
    assert.deepEqual(replies, [{ [node]: { ok: `tasks ${id} flagged as revoked` } }]);
    const revoked = (await app!.control.inspect({ destination: [node], timeoutMs: 5000 }).revoked())[node] as string[];
    assert.ok(revoked.includes(id));
    // AsyncResult.revoke(): the same broadcast for its own id.
    const other = randomUUID();
    await app!.asyncResult(other).revoke({ reply: true, destination: [node], timeoutMs: 5000 });
    assert.ok(((await app!.control.inspect({ destination: [node], timeoutMs: 5000 }).revoked())[node] as string[]).includes(other));
  });

  it('celeriac inspect ping --json and celeriac status list the Python worker', async (t) => {
    if (skip(t)) return;
    const { broker } = target.urls();
    const ping = await runCli(['inspect', 'ping', '--json', '-d', node, '-t', '5', '-b', broker]);
    assert.equal(ping.code, 0, ping.stderr);
    assert.deepEqual(JSON.parse(ping.stdout), { [node]: { ok: 'pong' } });
    const status = await runCli(['status', '-t', '3', '-b', broker]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, new RegExp(`^${node.replace(/[.]/g, '\\.')}: OK$`, 'm'));
    assert.match(status.stdout, /\d+ nodes? online\./);
    const registered = await runCli(['inspect', 'registered', '-d', node, '-t', '5', '-b', broker]);
    assert.equal(registered.code, 0, registered.stderr);
    assert.match(registered.stdout, new RegExp(`-> ${node.replace(/[.]/g, '\\.')}: OK`));
    assert.match(registered.stdout, /\* tasks\.add/);
    const nobody = await runCli(['inspect', 'ping', '-d', 'ghost@nowhere', '-t', '0.5', '-b', broker]);
    assert.equal(nobody.code, 3);
    assert.match(nobody.stderr, /no worker replied/);
  });

  it('celeriac control rate_limit and revoke get the Python worker\'s replies', async (t) => {
    if (skip(t)) return;
    const { broker } = target.urls();
    const out = await runCli(['control', 'rate_limit', 'tasks.add', '10/m', '-d', node, '-t', '5', '--json', '-b', broker]);
    assert.equal(out.code, 0, out.stderr);
    assert.deepEqual(JSON.parse(out.stdout), { [node]: { ok: 'new rate limit set successfully' } });
    const id = randomUUID();
    const revoke = await runCli(['control', 'revoke', id, '-d', node, '-t', '5', '-b', broker]);
    assert.equal(revoke.code, 0, revoke.stderr);
    assert.match(revoke.stdout, new RegExp(`ok: tasks ${id} flagged as revoked`));
  });
}
