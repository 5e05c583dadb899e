/**
 * Events a Celeriac worker sends, read by Python Celery 5.2.6's own
 * `app.events.Receiver` (shared by test/interop/{redis,amqp}/events.test.ts):
 * every event type arrives, and each has exactly the fields, and Python
 * types, of the event Celery itself sent (test/fixtures/celery-5.2.6/events/).
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { it } from 'node:test';
import type { TestContext } from 'node:test';
import { createApp } from '../../src/client/app.ts';
import { createLogger } from '../../src/observability/logging.ts';
import { createWorker } from '../../src/worker/worker.ts';
import { currentTask } from '../../src/worker/context.ts';
import { VECTORS_DIR } from './fixtures.ts';
import { spawn } from 'node:child_process';
import { HARNESS_DIR, pyScript } from './python-celery.ts';
import { PYTHON, requireService, waitFor } from './services.ts';

export interface EventsInteropTarget {
  ready: () => boolean;
  what: string;
  /** Broker and result backend URLs of the Celeriac app; CELERY_BROKER_URL/CELERY_RESULT_BACKEND for Python. */
  urls: () => { broker: string; backend: string };
}

const PY_RECEIVER = `
import json, os, socket, time
from harness_tasks import app
node = os.environ['EV_NODE']
vectors = os.environ['EV_VECTORS']
seen = []
done = []
def on_event(event):
    if event.get('hostname') == node or event.get('ev_marker') or event.get('uuid') in ids():
        seen.append(event)
    if event.get('type') == 'worker-offline' and event.get('hostname') == node:
        done.append(1)
def ids():
    return {e.get('uuid') for e in seen if e.get('hostname') == node}
sent = []
def on_any(event):
    if event.get('type') == 'task-sent':
        sent.append(event)
    on_event(event)
with app.connection_for_read() as conn:
    recv = app.events.Receiver(conn, handlers={'*': on_any})
    deadline = time.time() + 60
    with recv.consumer_context() as (c, channel, consumers):
        try:
            c.drain_events(timeout=0.3)
        except socket.timeout:
            pass
        open(os.environ['EV_READY'], 'w').close()
        while not done and time.time() < deadline:
            try:
                c.drain_events(timeout=0.5)
            except socket.timeout:
                pass
def types(ev):
    return {k: type(v).__name__ for k, v in ev.items() if k != 'local_received'}
ours = [e for e in seen if e.get('hostname') == node] + [e for e in sent if e.get('uuid') in ids()]
reference = {}
for t in ['worker-online', 'worker-heartbeat', 'worker-offline', 'task-sent', 'task-received', 'task-started', 'task-succeeded', 'task-failed', 'task-retried', 'task-revoked']:
    with open(os.path.join(vectors, 'events', t + '.json')) as f:
        reference[t] = types(json.load(f)['event'])
print(json.dumps({'events': [{'type': e['type'], 'uuid': e.get('uuid'), 'hostname': e['hostname'], 'types': types(e), 'local_received': 'local_received' in e, 'fields': {k: e[k] for k in ('args', 'kwargs', 'result', 'exception', 'expired', 'queue') if k in e}} for e in ours], 'reference': reference}, default=str))
`;

const NULLABLE = new Set(['eta', 'expires', 'parent_id', 'signum']);

interface PyOut {
  events: Array<{ type: string; uuid: string | null; hostname: string; types: Record<string, string>; local_received: boolean; fields: Record<string, unknown> }>;
  reference: Record<string, Record<string, string>>;
}

/** Define the case (call inside a `describe`). */
export function eventsInteropCases(target: EventsInteropTarget): void {
  const skip = (t: TestContext): boolean => !requireService(t, target.ready(), target.what);

  it('Python app.events.Receiver gets every event type from a Celeriac worker (-E), field by field as Celery sends them', async (t) => {
    if (skip(t)) return;
    const { broker, backend } = target.urls();
    const node = `ev-${randomUUID().slice(0, 8)}@interop`;
    const dir = mkdtempSync(join(tmpdir(), 'ev-interop-'));
    const readyFile = join(dir, 'ready');
    const queue = `ev-${randomUUID().slice(0, 8)}`;
    const py = pyScript(PY_RECEIVER, { CELERY_BROKER_URL: broker, CELERY_RESULT_BACKEND: backend, EV_NODE: node, EV_VECTORS: VECTORS_DIR, EV_READY: readyFile }, 90_000);
    let pyFailed: unknown;
    py.catch((e: unknown) => (pyFailed = e));
    const app = createApp({ brokerUrl: broker, resultBackend: backend, taskSendSentEvent: true, taskDefaultQueue: queue, logger: createLogger({ level: 'silent' }) });
    try {
      await waitFor(() => existsSync(readyFile) || pyFailed !== undefined, 30_000, 'the Python receiver');
      if (pyFailed) throw pyFailed;
      const add = app.task('ev.add', (x: number, y: number) => x + y);
      const fail = app.task('ev.fail', (msg: string) => {
        throw new RangeError(msg);
      });
      let tries = 0;
      const flaky = app.task('ev.flaky', () => {
        if (tries++ === 0) currentTask().retry({ countdown: 0, exc: new Error('transient') });
        return 'ok';
      });
      const expiring = app.task('ev.expiring', () => 1);
      const worker = createWorker({ app, pool: 'solo', concurrency: 2, nodeName: node, taskEvents: true, heartbeatIntervalS: 0.5, shutdownTimeoutMs: 2000 });
      await worker.start();
      const r1 = await add.delay(2, 3);
      assert.equal(await r1.get({ timeoutMs: 10_000 }), 5);
      await assert.rejects((await fail.delay('bad value')).get({ timeoutMs: 10_000 }));
      assert.equal(await (await flaky.delay()).get({ timeoutMs: 10_000 }), 'ok');
      await assert.rejects((await expiring.applyAsync([], {}, { countdown: 0.3, expires: 0.1 })).get({ timeoutMs: 10_000 }));
      await new Promise((r) => setTimeout(r, 1200)); // heartbeats
      await worker.stop();
      const out = JSON.parse((await py).trim().split('\n').pop()!) as PyOut;
      const types = new Set(out.events.map((e) => e.type));
      for (const type of Object.keys(out.reference)) assert.ok(types.has(type), `Python received ${type} (got ${[...types].join(', ')})`);
      for (const e of out.events) {
        assert.ok(e.local_received, 'processed by Celery\'s receiver');
        const ref = out.reference[e.type]!;
        assert.deepEqual(Object.keys(e.types).sort(), Object.keys(ref).sort(), `${e.type}: the same fields as Celery's own`);
        for (const [k, type] of Object.entries(e.types)) {
          // Fields that are None or a value (a retry's parent, a countdown's eta, a terminated task's signal).
          if (NULLABLE.has(k) && (type === 'NoneType' || ref[k] === 'NoneType')) continue;
          assert.equal(type, ref[k], `${e.type}.${k}: the Python type of Celery's own`);
        }
      }
      const received = out.events.find((e) => e.type === 'task-received' && e.uuid === r1.id)!;
      assert.deepEqual(received.fields, { args: '(2, 3)', kwargs: '{}' });
      assert.equal(out.events.find((e) => e.type === 'task-succeeded' && e.uuid === r1.id)!.fields.result, '5');
      assert.equal(out.events.find((e) => e.type === 'task-failed')!.fields.exception, "RangeError('bad value')");
      assert.equal(out.events.find((e) => e.type === 'task-revoked')!.fields.expired, true);
      assert.equal(out.events.find((e) => e.type === 'task-sent' && e.uuid === r1.id)!.fields.queue, queue);
    } finally {
      await app.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('`celery events --dump` prints a Celeriac worker\'s events', async (t) => {
    if (skip(t)) return;
    const { broker, backend } = target.urls();
    const node = `evd-${randomUUID().slice(0, 8)}@interop`;
    const queue = `evd-${randomUUID().slice(0, 8)}`;
    const dump = spawn(PYTHON, ['-m', 'celery', '-A', 'harness_tasks', 'events', '--dump'], {
      cwd: HARNESS_DIR,
      env: { ...process.env, PYTHONPATH: HARNESS_DIR, CELERY_BROKER_URL: broker, CELERY_RESULT_BACKEND: backend },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    dump.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    dump.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const app = createApp({ brokerUrl: broker, resultBackend: backend, taskDefaultQueue: queue, logger: createLogger({ level: 'silent' }) });
    try {
      await waitFor(() => out.includes('starting capture'), 30_000, 'celery events --dump');
      await new Promise((r) => setTimeout(r, 1000)); // its consumer subscribes just after the banner
      const add = app.task('ev.add', (x: number, y: number) => x + y);
      const worker = createWorker({ app, pool: 'solo', concurrency: 1, nodeName: node, taskEvents: true, heartbeatIntervalS: 0.5, shutdownTimeoutMs: 2000 });
      await worker.start();
      const r = await add.delay(2, 3);
      assert.equal(await r.get({ timeoutMs: 10_000 }), 5);
      await new Promise((res) => setTimeout(res, 800));
      await worker.stop();
      await waitFor(() => out.includes(`${node} [`) && /shutdown:/.test(out), 10_000, 'the dump of worker-offline');
      for (const line of [`task received: ev.add(${r.id}) args=(2, 3) kwargs={}`, `task started: ev.add(${r.id})`, `task succeeded: ev.add(${r.id})`]) {
        assert.ok(out.includes(line), `dump has "${line}":\n${out}`);
      }
      for (const what of ['started:', 'heartbeat:', 'shutdown:']) assert.match(out, new RegExp(`${node.replace('.', '\\.')} \\[[^\\]]+\\] ${what}`), what);
    } finally {
      dump.kill('SIGTERM');
      await app.close();
    }
  });
}
