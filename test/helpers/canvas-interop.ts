/**
 * The canvas interop cases, one list for every broker (Redis, RabbitMQ),
 * live against Python Celery 5.2.6: a Python worker consumes queue `py`, a
 * Celeriac worker queue `ts`, so each signature's `queue` option says which
 * side runs it. Results are in a private Redis (db 1), where chords join on
 * Celery's `celery-taskset-meta-<id>.j/.t/.s` keys.
 */
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it, type TestContext } from 'node:test';
import { Redis } from 'ioredis';
import { createApp, type App } from '../../src/client/app.ts';
import { RemoteTaskError } from '../../src/errors.ts';
import { chain, chord, chunks, group, si, sig, restoreGroup } from '../../src/index.ts';
import { createLogger } from '../../src/observability/logging.ts';
import { startCeleriacWorker, type CeleriacWorkerProcess } from './celeriac-worker.ts';
import { pyClient, pyScript, startPythonWorker, type PythonWorker } from './python-celery.ts';
import { startRedisServer, type RedisServer } from './redis-server.ts';
import { requireService } from './services.ts';

const CANVAS_TASKS = new URL('../interop/apps/canvas_tasks.ts', import.meta.url).pathname;
const T = 30_000;

/** Where the broker is: a URL per run, and how to clean it up. */
export interface CanvasInteropTarget {
  /** e.g. 'Redis', 'RabbitMQ' (test titles). */
  name: string;
  /** The services are there (else every case is skipped). */
  ready: boolean;
  /** Start or create the broker; `redis` is the private result backend server (its db 0 is free). */
  broker(redis: RedisServer): Promise<{ url: string; close(): Promise<void> }>;
}

/** Define the canvas interop cases for `target`. */
export function canvasInteropCases(target: CanvasInteropTarget): void {
describe(`canvas between Celeriac and Python Celery 5.2.6 (${target.name})`, () => {
  let redis: RedisServer | undefined;
  let py: PythonWorker | undefined;
  let ts: CeleriacWorkerProcess | undefined;
  let app: App | undefined;
  let backendDb: Redis | undefined;
  const ready = target.ready;
  let broker: { url: string; close(): Promise<void> } | undefined;
  const need = (t: TestContext): boolean => requireService(t, ready, 'the broker, redis-server and python3-celery');
  const logger = createLogger({ level: 'warn' });
  let env: Record<string, string> = {};

  const on = (queue: 'py' | 'ts') => ({ queue });
  const add = (x: number, y: number | undefined, queue: 'py' | 'ts') => sig('tasks.add', y === undefined ? [x] : [x, y], {}, on(queue));

  /** Run Python code with the harness app imported as `h` and the canvas names in scope; returns its last stdout line as JSON. */
  async function python(code: string): Promise<unknown> {
    const out = await pyScript(
      `import json\nfrom celery import chain, chord, group\nfrom celery.result import AsyncResult, GroupResult\nimport harness_tasks as h\napp = h.app\n${code}`,
      env,
      90_000,
    );
    return JSON.parse(out.trim().split('\n').pop()!);
  }

  async function errbackCalls(): Promise<string[]> {
    return (await backendDb!.lrange('canvas:errbacks', 0, -1)).sort();
  }

  before(async () => {
    if (!ready) return;
    redis = await startRedisServer();
    broker = await target.broker(redis);
    env = { CELERY_BROKER_URL: broker.url, CELERY_RESULT_BACKEND: redis.url(1) };
    py = await startPythonWorker({ brokerUrl: broker.url, backendUrl: redis.url(1), args: ['-Q', 'py'], concurrency: 2 });
    ts = await startCeleriacWorker({ env: { CELERIAC_BROKER_URL: broker.url, CELERIAC_RESULT_BACKEND: redis.url(1) }, args: ['-Q', 'ts', '-c', '4'], module: CANVAS_TASKS });
    app = createApp({ brokerUrl: broker.url, resultBackend: redis.url(1), logger });
    backendDb = new Redis(redis.url(1));
  });
  after(async () => {
    await app?.close();
    backendDb?.disconnect();
    await ts?.stop();
    await py?.stop();
    await broker?.close();
    await redis?.stop();
  });
  beforeEach(async () => {
    await backendDb?.del('canvas:errbacks');
  });

  it('a Celeriac chord with 2 Python and 2 Celeriac header tasks completes, body on either side', async (t) => {
    if (!need(t)) return;
    const header = [add(1, 1, 'py'), add(2, 2, 'ts'), add(3, 3, 'py'), add(4, 4, 'ts')];
    for (const bodySide of ['ts', 'py'] as const) {
      const r = await chord(header, sig('tasks.tsum', [], {}, on(bodySide))).applyAsync(app!);
      assert.equal(await r.get({ timeoutMs: T }), 20, `body on ${bodySide}`);
      const fromPython = (await pyClient(['--broker', env.CELERY_BROKER_URL!, '--backend', env.CELERY_RESULT_BACKEND!, 'result', r.id, '--timeout', '10'])) as { state: string; result: unknown };
      assert.equal(fromPython.state, 'SUCCESS');
      assert.equal(fromPython.result, 20);
    }
    // The join keys are gone once the body was sent.
    assert.deepEqual(await backendDb!.keys('celery-taskset-meta-*.[jts]'), []);
  });

  it('a Python chord whose header runs on Celeriac completes (body on Python, then on Celeriac)', async (t) => {
    if (!need(t)) return;
    for (const bodySide of ['py', 'ts']) {
      const out = (await python(
        `r = chord([h.add.s(1, 1).set(queue='ts'), h.add.s(2, 2).set(queue='ts'), h.add.s(3, 3).set(queue='py')], h.tsum.s().set(queue='${bodySide}')).apply_async()\nprint(json.dumps({'id': r.id, 'result': r.get(timeout=60)}))`,
      )) as { id: string; result: number };
      assert.equal(out.result, 12, `body on ${bodySide}`);
      assert.equal(await app!.asyncResult(out.id).get({ timeoutMs: T }), 12);
    }
  });

  it('a failed Celeriac chord header gives the body ChordError on both sides, and its errback runs once', async (t) => {
    if (!need(t)) return;
    const body = sig('tasks.tsum', [], {}, on('py')).linkError(sig('tasks.mark', [], {}, on('py')));
    const r = await chord([add(1, 1, 'py'), sig('tasks.fail', ['nope'], {}, on('ts')), add(2, 2, 'ts')], body).applyAsync(app!);
    const err = await r.get({ timeoutMs: T }).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof RemoteTaskError, String(err));
    assert.equal(err.excType, 'ChordError');
    assert.match(String(err.excMessage[0]), /^Dependency [0-9a-f-]{36} raised ValueError\('nope'\)$/);
    const fromPython = (await python(`r = AsyncResult('${r.id}', app=app)\nprint(json.dumps({'state': r.state, 'type': type(r.result).__name__}))`)) as { state: string; type: string };
    assert.deepEqual(fromPython, { state: 'FAILURE', type: 'ChordError' });
    await waitUntil(async () => (await errbackCalls()).length >= 1);
    await sleep(1000);
    assert.deepEqual(await errbackCalls(), [`py:${r.id}`]);
  });

  it('a failed chain step marks the rest FAILURE on both sides; errbacks run once each (Celeriac fails)', async (t) => {
    if (!need(t)) return;
    const steps = [add(1, 2, 'py'), sig('tasks.fail', [], {}, on('ts')), add(3, undefined, 'py'), add(4, undefined, 'ts')].map((s, i) => s.set({ taskId: `00000000-0000-4000-8000-00000000000${i}` }));
    const c = chain(...steps)
      .linkError(sig('tasks.mark', [], {}, on('py')))
      .linkError(sig('tasks.mark', [], {}, on('ts')))
      .linkError(sig('tasks.on_error', [], {}, on('ts')));
    const r = await c.applyAsync(app!);
    await assert.rejects(r.get({ timeoutMs: T }), (e: unknown) => e instanceof RemoteTaskError && e.excType === 'ValueError');
    const failed = steps[1]!.options.task_id as string;
    const states = (await python(`print(json.dumps([AsyncResult(i, app=app).state for i in ${JSON.stringify(steps.map((s) => s.options.task_id))}]))`)) as string[];
    assert.deepEqual(states, ['SUCCESS', 'FAILURE', 'FAILURE', 'FAILURE']);
    await waitUntil(async () => (await errbackCalls()).length >= 3);
    await sleep(1000);
    assert.deepEqual(await errbackCalls(), [`py:${failed}`, `ts-new:${failed}:ValueError`, `ts:${failed}`].sort());
  });

  it('a failed chain step marks the rest FAILURE on both sides; errbacks run once each (Python fails)', async (t) => {
    if (!need(t)) return;
    const out = (await python(
      [
        "eb = [h.mark.s().set(queue='py'), h.mark.s().set(queue='ts'), h.on_error_py.s().set(queue='py')]",
        "c = chain(h.add.s(1, 2).set(queue='ts'), h.fail.s().set(queue='py'), h.add.s(3).set(queue='ts'), h.add.s(4).set(queue='py'))",
        'for e in eb: c = c.on_error(e)',
        'r = c.apply_async()',
        'ids = []',
        'n = r',
        'while n is not None: ids.append(n.id); n = n.parent',
        'ids.reverse()',
        'import time',
        'deadline = time.time() + 60',
        "while AsyncResult(ids[-1], app=app).state != 'FAILURE' and time.time() < deadline: time.sleep(0.1)",
        "print(json.dumps({'ids': ids}))",
      ].join('\n'),
    )) as { ids: string[] };
    assert.equal(out.ids.length, 4);
    const states = await Promise.all(out.ids.map(async (id) => (await app!.asyncResult(id).meta()).status));
    assert.deepEqual(states, ['SUCCESS', 'FAILURE', 'FAILURE', 'FAILURE']);
    await waitUntil(async () => (await errbackCalls()).length >= 3);
    await sleep(1000);
    const failed = out.ids[1]!;
    assert.deepEqual(await errbackCalls(), [`py:${failed}`, `py-new:${failed}:ValueError`, `ts:${failed}`].sort());
  });

  it('a step killed at its hard time limit on a Celeriac prefork worker fails the rest of its chain and its chord, errbacks once', async (t) => {
    if (!need(t)) return;
    const killed = si('tasks.sleep', [20], {}, { queue: 'ts', timeLimit: 1 });
    const steps = [add(1, 2, 'ts'), killed, add(3, undefined, 'py')].map((s, i) => s.set({ taskId: `00000000-0000-4000-8000-00000000010${i}` }));
    const r = await chain(...steps).linkError(sig('tasks.mark', [], {}, on('py'))).applyAsync(app!);
    await assert.rejects(r.get({ timeoutMs: T }), (e: unknown) => e instanceof RemoteTaskError && e.excType === 'TimeLimitExceeded');
    const states = await Promise.all(steps.map(async (s) => (await app!.asyncResult(s.options.task_id as string).meta()).status));
    assert.deepEqual(states, ['SUCCESS', 'FAILURE', 'FAILURE']);
    await waitUntil(async () => (await errbackCalls()).length >= 1);
    const c = await chord([add(1, 1, 'py'), si('tasks.sleep', [20], {}, { queue: 'ts', timeLimit: 1 })], sig('tasks.tsum', [], {}, on('py'))).applyAsync(app!);
    await assert.rejects(c.get({ timeoutMs: T }), (e: unknown) => e instanceof RemoteTaskError && e.excType === 'ChordError' && /raised TimeLimitExceeded/.test(String(e.excMessage[0])));
    await sleep(500);
    assert.deepEqual(await errbackCalls(), [`py:${steps[1]!.options.task_id as string}`]);
  });

  it('Celeriac-built chain, group and chord run on a Python worker; results read from both sides', async (t) => {
    if (!need(t)) return;
    const c = await chain(add(1, 2, 'py'), add(3, undefined, 'py'), si('tasks.add', [10, 10], {}, on('py')), add(4, undefined, 'py')).applyAsync(app!);
    assert.equal(await c.get({ timeoutMs: T }), 24);
    const g = await group(add(1, 1, 'py'), add(2, 2, 'py'), add(3, 3, 'py')).applyAsync(app!);
    assert.deepEqual(await g.join({ timeoutMs: T }), [2, 4, 6]);
    await g.save();
    const ch = await chord([add(1, 1, 'py'), add(2, 2, 'py')], sig('tasks.tsum', [], {}, on('py'))).applyAsync(app!);
    assert.equal(await ch.get({ timeoutMs: T }), 6);
    const fromPython = (await python(
      `print(json.dumps({'chain': AsyncResult('${c.id}', app=app).get(timeout=30), 'group': GroupResult.restore('${g.id}', app=app).get(timeout=30), 'chord': AsyncResult('${ch.id}', app=app).get(timeout=30)}))`,
    )) as Record<string, unknown>;
    assert.deepEqual(fromPython, { chain: 24, group: [2, 4, 6], chord: 6 });
  });

  it('map, starmap and chunks: Python-built ones run on a Celeriac worker, Celeriac-built chunks on both', async (t) => {
    if (!need(t)) return;
    const out = (await python(
      [
        // Celery's map/starmap signatures take the queue at apply_async only (their own options are not sent).
        "q = dict(queue='ts')",
        'm = h.echo.map([1, 2]).apply_async(**q).get(timeout=30)',
        'sm = h.add.starmap([(1, 2), (3, 4)]).apply_async(**q).get(timeout=30)',
        'ch = h.add.chunks([(1, 2), (3, 4), (5, 6)], 2).group().apply_async(**q).get(timeout=30)',
        "print(json.dumps({'map': m, 'starmap': sm, 'chunks': ch}))",
      ].join('\n'),
    )) as Record<string, unknown>;
    assert.deepEqual(out, { map: [{ args: [1], kwargs: {} }, { args: [2], kwargs: {} }], starmap: [3, 7], chunks: [[3, 7], [11]] });
    for (const side of ['py', 'ts'] as const) {
      const g = await chunks('tasks.add', [[1, 2], [3, 4], [5, 6]], 2).applyAsync(app!, { queue: side });
      assert.deepEqual(await g.join({ timeoutMs: T }), [[3, 7], [11]], `chunks on ${side}`);
    }
  });

  it('Python-built chain, group, chord (and a chain through a group) run on a Celeriac worker; results read from both sides', async (t) => {
    if (!need(t)) return;
    const run = async (name: string, build: string, save = ''): Promise<{ id: string; result: unknown }> =>
      (await python(`q = dict(queue='ts')\nr = ${build}.apply_async()${save}\nprint(json.dumps({'id': r.id, 'result': r.get(timeout=30)}))`).catch((e: unknown) => {
        throw new Error(`${name}: ${String(e).slice(-400)}\n--- celeriac worker ---\n${ts!.output().slice(-3000)}`);
      })) as { id: string; result: unknown };
    const c = await run('chain', 'chain(h.add.s(1, 2).set(**q), h.add.s(3).set(**q), h.add.si(10, 10).set(**q), h.add.s(4).set(**q))');
    const g = await run('group', 'group(h.add.s(1, 1).set(**q), h.add.s(2, 2).set(**q))', '; r.save()');
    const ch = await run('chord', 'chord([h.add.s(1, 1).set(**q), h.add.s(2, 2).set(**q)], h.tsum.s().set(**q))');
    const up = await run('chain through a group', 'chain(h.add.s(1, 1).set(**q), group(h.add.s(1).set(**q), h.add.s(2).set(**q)), h.tsum.s().set(**q))');
    const out = { ids: { chain: c.id, group: g.id, chord: ch.id, upgrade: up.id }, results: { chain: c.result, group: g.result, chord: ch.result, upgrade: up.result } };
    assert.deepEqual(out.results, { chain: 24, group: [2, 4], chord: 6, upgrade: 7 });
    assert.equal(await app!.asyncResult(out.ids.chain!).get({ timeoutMs: T }), 24);
    assert.equal(await app!.asyncResult(out.ids.chord!).get({ timeoutMs: T }), 6);
    assert.equal(await app!.asyncResult(out.ids.upgrade!).get({ timeoutMs: T }), 7);
    const restored = await restoreGroup(app!, out.ids.group!);
    assert.deepEqual(await restored?.join({ timeoutMs: T }), [2, 4]);
  });
});
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function waitUntil(cond: () => Promise<boolean>, ms = T): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await sleep(100);
  }
}
