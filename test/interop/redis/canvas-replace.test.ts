/**
 * Task.replace and Task.add_to_chord across languages, live against Python
 * Celery 5.2.6 on a private Redis (broker db 0, results db 1): a Python
 * worker reads queue `py`, a Celeriac worker queue `ts`.
 *
 * - a Celeriac task replaces itself inside a Python-sent chain and chord
 *   (by a task, a chain, a group): Python gets the final result, and the
 *   replaced step's id resolves to the replacement's result on both sides;
 * - a Python task replaces itself inside a Celeriac-sent chain, with a
 *   task the Celeriac worker runs;
 * - add_to_chord from either side: the other side's join counts the part
 *   (Celery's `.t` key);
 * - the messages replace() sends equal those of Celery 5.2.6's Task.replace
 *   for the same request (harness/replace_shapes.py, no broker needed).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it, type TestContext } from 'node:test';
import { createApp, type App } from '../../../src/client/app.ts';
import { execFileSync } from 'node:child_process';
import { chain, chord, sig } from '../../../src/index.ts';
import { applyDict } from '../../../src/client/canvas/apply.ts';
import type { FollowUpSend } from '../../../src/client/producer.ts';
import { ResultStore } from '../../../src/client/results.ts';
import type { SignatureDict } from '../../../src/protocol/types.ts';
import { createMemoryBackend } from '../../../src/transport/memory/backend.ts';
import { replacementOf } from '../../../src/worker/canvas/replace.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { startCeleriacWorker, type CeleriacWorkerProcess } from '../../helpers/celeriac-worker.ts';
import { HARNESS_DIR, pyScript, startPythonWorker, type PythonWorker } from '../../helpers/python-celery.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { hasPythonCelery, PYTHON, requireService } from '../../helpers/services.ts';

const REPLACE_TASKS = new URL('../apps/replace_tasks.ts', import.meta.url).pathname;
const T = 30_000;

describe('replace and add_to_chord between Celeriac and Python Celery 5.2.6 (Redis)', () => {
  const ready = hasRedisServer() && hasPythonCelery();
  let redis: RedisServer | undefined;
  let py: PythonWorker | undefined;
  let ts: CeleriacWorkerProcess | undefined;
  let app: App | undefined;
  let env: Record<string, string> = {};
  const need = (t: TestContext): boolean => requireService(t, ready, 'redis-server and python3-celery');

  /** Run Python with the harness app as `h`; returns its last stdout line as JSON. */
  async function python(code: string): Promise<unknown> {
    const out = await pyScript(`import json\nfrom celery import chain, chord, group\nfrom celery.result import AsyncResult\nimport harness_tasks as h\napp = h.app\n${code}`, env, 90_000);
    return JSON.parse(out.trim().split('\n').pop()!);
  }

  before(async () => {
    if (!ready) return;
    redis = await startRedisServer();
    env = { CELERY_BROKER_URL: redis.url(0), CELERY_RESULT_BACKEND: redis.url(1) };
    py = await startPythonWorker({ brokerUrl: redis.url(0), backendUrl: redis.url(1), args: ['-Q', 'py'], concurrency: 2 });
    ts = await startCeleriacWorker({ env: { CELERIAC_BROKER_URL: redis.url(0), CELERIAC_RESULT_BACKEND: redis.url(1) }, args: ['-Q', 'ts', '-c', '2'], module: REPLACE_TASKS });
    app = createApp({ brokerUrl: redis.url(0), resultBackend: redis.url(1), logger: createLogger({ level: 'warn' }) });
  });
  after(async () => {
    await app?.close();
    await ts?.stop();
    await py?.stop();
    await redis?.stop();
  });

  it('a Celeriac task replaced inside a Python chain: Python gets the final result; the step id holds the replacement result', async (t) => {
    if (!need(t)) return;
    const rs = (how: string, side: string, args = '()') => `app.signature('tasks.ts_replace', args=${args}, kwargs={'how': '${how}', 'side': '${side}'}, queue='ts')`;
    const out = (await python(
      [
        `r = chain(h.add.s(1, 2).set(queue='py'), ${rs('task', 'py')}, h.add.s(10).set(queue='py')).apply_async()`,
        'final = r.get(timeout=60)',
        'step = r.parent',
        `c = chain(h.add.s(1, 2).set(queue='py'), ${rs('chain', 'py')}, h.add.s(10).set(queue='ts')).apply_async()`,
        `g = chain(${rs('group', 'py', '(3,)')}, h.tsum.s().set(queue='py')).apply_async()`,
        "print(json.dumps({'final': final, 'step_id': step.id, 'step': step.get(timeout=60), 'chain': c.get(timeout=60), 'group': g.get(timeout=60)}))",
      ].join('\n'),
    )) as { final: number; step_id: string; step: number; chain: number; group: number };
    // (1 + 2) + 100, then + 10.
    assert.equal(out.final, 113);
    assert.equal(out.step, 103, "Python reads the replaced step's id as the replacement's result");
    assert.equal(await app!.asyncResult(out.step_id).get({ timeoutMs: T }), 103);
    // (1 + 2) + 2 + 1, then + 10 (the last step on Celeriac).
    assert.equal(out.chain, 16);
    // [3 + 1, 3 + 2] summed by Python: the group's list reaches the next step.
    assert.equal(out.group, 9);
  });

  it('a Celeriac task replaced inside a Python chord header: the body gets the replacement result as that part', async (t) => {
    if (!need(t)) return;
    const out = (await python(
      [
        "parts = [h.add.s(1, 1).set(queue='py'), app.signature('tasks.ts_replace', args=(5,), kwargs={'how': 'chain', 'side': 'py'}, queue='ts'), app.signature('tasks.ts_replace', args=(1,), kwargs={'how': 'chord', 'side': 'py'}, queue='ts')]",
        "r = chord(parts, h.tsum.s().set(queue='py')).apply_async()",
        "print(json.dumps({'result': r.get(timeout=60)}))",
      ].join('\n'),
    )) as { result: number };
    // 2 + (5 + 2 + 1) + ((1 + 1) + (1 + 2))
    assert.equal(out.result, 2 + 8 + 5);
  });

  it('a Python task replaced inside a Celeriac chain, by a task the Celeriac worker runs', async (t) => {
    if (!need(t)) return;
    const step = sig('tasks.py_replace', [5], { side: 'ts' }, { queue: 'py' });
    const r = await chain(step, sig('tasks.add', [10], {}, { queue: 'ts' })).applyAsync(app!);
    assert.equal(await r.get({ timeoutMs: T }), 115);
    const replaced = await chord([sig('tasks.py_replace', [1], { side: 'ts' }, { queue: 'py' }), sig('tasks.add', [2, 2], {}, { queue: 'ts' })], sig('tasks.tsum', [], {}, { queue: 'ts' })).applyAsync(app!);
    assert.equal(await replaced.get({ timeoutMs: T }), 101 + 4);
  });

  it("add_to_chord from either side: the other side's join waits for the added part", async (t) => {
    if (!need(t)) return;
    // Celeriac adds (INCR .t); the Python body's join (the last part may be Python's) counts it.
    const a = await chord([sig('tasks.ts_adder', [1, 5], { side: 'py' }, { queue: 'ts' }), sig('tasks.add', [2, 2], {}, { queue: 'py' })], sig('tasks.tsum', [], {}, { queue: 'py' })).applyAsync(app!);
    assert.equal(await a.get({ timeoutMs: T }), 1 + 10 + 4);
    // Python adds; the Celeriac join counts it.
    const b = await chord([sig('tasks.py_adder', [1, 5], { side: 'ts' }, { queue: 'py' }), sig('tasks.add', [2, 2], {}, { queue: 'ts' })], sig('tasks.tsum', [], {}, { queue: 'ts' })).applyAsync(app!);
    assert.equal(await b.get({ timeoutMs: T }), 1 + 10 + 4);
  });
});

describe('replace: the messages equal what Celery 5.2.6 sends (harness/replace_shapes.py)', () => {
  const ID = '11111111-1111-4111-8111-111111111111';
  const ROOT = '22222222-2222-4222-8222-222222222222';
  const GROUP = '33333333-3333-4333-8333-333333333333';
  const BODY = sig('t.tsum').set({ taskId: '44444444-4444-4444-8444-444444444444' }).toDict();
  const NEXT = sig('t.add', [10]).set({ taskId: '55555555-5555-4555-8555-555555555555' }).toDict();
  const AFTER = sig('t.add', [20]).set({ taskId: '66666666-6666-4666-8666-666666666666' }).toDict();
  const request = { id: ID, task: 't.replacer', args: [], kwargs: {}, group: GROUP, groupIndex: 2, rootId: ROOT, parentId: ROOT, retries: 0, embed: { chain: [AFTER, NEXT], chord: BODY, callbacks: [sig('t.record').toDict()], errbacks: [sig('t.on_error').toDict()] } };

  interface Sent { task: string; id: string; parent_id: string | null; root_id: string; group: string | null; group_index: number | null; args: unknown[]; embed: { callbacks: SignatureDict[] | null; errbacks: SignatureDict[] | null; chain: SignatureDict[] | null; chord: SignatureDict | null } }
  /** What must match: names, ids, membership and links of every signature (Python adds reply_to; generated ids differ). */
  const names = (l: SignatureDict[] | null) => (l ?? []).map((d) => d.task);
  const step = (d: SignatureDict) => ({ task: d.task, args: d.args, task_id: d.options.task_id, link: names(d.options.link as never), link_error: names(d.options.link_error as never) });
  const comparable = (m: Sent, firstIdGenerated: boolean) => ({
    task: m.task,
    id: firstIdGenerated ? 'generated' : m.id,
    parent_id: m.parent_id,
    root_id: m.root_id,
    group: m.group,
    group_index: m.group_index,
    args: m.args,
    callbacks: names(m.embed.callbacks),
    errbacks: names(m.embed.errbacks),
    chain: (m.embed.chain ?? []).map(step),
    chord: m.embed.chord ? step(m.embed.chord) : null,
  });

  async function ours(d: SignatureDict): Promise<Sent[]> {
    const sent: FollowUpSend[] = [];
    const { dict, ctx } = replacementOf(request, d);
    await applyDict({ store: new ResultStore(createMemoryBackend()), sendFollowUp: async (f) => void sent.push(f) }, dict, ctx);
    return sent.map(({ input: i }) => ({ task: i.task, id: i.id!, parent_id: i.parentId ?? null, root_id: i.rootId!, group: i.group ?? null, group_index: i.groupIndex ?? null, args: i.args as unknown[], embed: i.embed as Sent['embed'] }));
  }

  it('replaced by a task, and by a chain, in a chain and a chord header', async (t) => {
    if (!requireService(t, hasPythonCelery(), 'python3-celery')) return;
    const py = JSON.parse(execFileSync(PYTHON, [`${HARNESS_DIR}replace_shapes.py`], { encoding: 'utf8', cwd: HARNESS_DIR })) as { task: Sent[]; chain: Sent[] };
    const task = await ours(sig('t.add', [1, 100]).toDict());
    assert.deepEqual(task.map((m) => comparable(m, false)), py.task.map((m) => comparable(m, false)));
    const ch = await ours(chain(sig('t.mul', [1, 2]), sig('t.add', [1])).toDict());
    assert.deepEqual(ch.map((m) => comparable(m, true)), py.chain.map((m) => comparable(m, true)));
    // Where Celeriac differs on purpose: Celery 5.2.6 drops the chord membership of a chain that replaces a
    // chain step (`sig |= rest` builds a new chain without the options set on it); Celeriac keeps it on the
    // last step, so a chord member in a chain still returns its part.
    const last = ch[0]!.embed.chain!.at(-1)!.options;
    assert.equal(py.chain[0]!.embed.chain!.at(-1)!.options.group_id, undefined);
    assert.equal(last.group_id, GROUP);
  });
});
