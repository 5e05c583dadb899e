/**
 * The messages `replace()` and `addToChord()` send (Celery 5.2.6's
 * `Task.replace` / `Task.add_to_chord` on the wire), the checks that refuse
 * bad use with a typed error, the `replaced` outcome of a task that calls
 * replace, and the `celery.accumulate` builtin.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { chain, chord, group, si, sig } from '../../../src/index.ts';
import { applyDict, type CanvasSender } from '../../../src/client/canvas/apply.ts';
import type { FollowUpSend } from '../../../src/client/producer.ts';
import { ResultStore } from '../../../src/client/results.ts';
import { currentTask, type RequestInfo } from '../../../src/core/task-context.ts';
import { CeleriacError, ConfigError, ValidationError } from '../../../src/errors.ts';
import type { SignatureDict } from '../../../src/protocol/types.ts';
import { createMemoryBackend } from '../../../src/transport/memory/backend.ts';
import { canvasBuiltin } from '../../../src/worker/canvas/builtins.ts';
import { addToChord, replacementOf, signatureDictOf } from '../../../src/worker/canvas/replace.ts';
import type { CanvasRequest, CanvasWorker } from '../../../src/worker/canvas/sender.ts';
import { executeJob, type ExecJob, type ExecOutcome } from '../../../src/worker/execute.ts';
import { createLogger } from '../../../src/observability/logging.ts';

const ID = '11111111-1111-4111-8111-111111111111';
const ROOT = '22222222-2222-4222-8222-222222222222';
const GROUP = '33333333-3333-4333-8333-333333333333';
const BODY = sig('t.tsum').set({ taskId: '44444444-4444-4444-8444-444444444444' }).toDict();
const NEXT = sig('t.add', [10]).set({ taskId: '55555555-5555-4555-8555-555555555555' }).toDict();
const AFTER = sig('t.add', [20]).set({ taskId: '66666666-6666-4666-8666-666666666666' }).toDict();
const CB = sig('t.record').toDict();
const EB = sig('t.on_error').toDict();

/** A request that is a chord header part (index 2), a chain step followed by NEXT then AFTER, with a callback and an errback. */
function request(over: Partial<CanvasRequest> = {}): CanvasRequest {
  return {
    id: ID,
    task: 't.replacer',
    args: [1],
    kwargs: {},
    group: GROUP,
    groupIndex: 2,
    rootId: ROOT,
    parentId: ROOT,
    retries: 0,
    // Reversed, as on the wire: the next step is the last element.
    embed: { chain: [AFTER, NEXT], chord: BODY, errbacks: [EB], callbacks: [CB] },
    ...over,
  };
}

function capture(): { sender: CanvasSender; sent: FollowUpSend[]; store: ResultStore; backend: ReturnType<typeof createMemoryBackend> } {
  const backend = createMemoryBackend();
  const store = new ResultStore(backend);
  const sent: FollowUpSend[] = [];
  return { sent, store, backend, sender: { store, sendFollowUp: async (f) => void sent.push(f) } };
}

async function sendReplacing(req: CanvasRequest, d: SignatureDict, queue?: string) {
  const c = capture();
  const { dict, ctx } = replacementOf(req, d, queue);
  const applied = await applyDict(c.sender, dict, ctx);
  return { ...c, applied };
}

describe('replace(): the messages', () => {
  it('a task: the task id, chord membership, links and the rest of the chain move to it; parent is the task', async () => {
    const { sent, applied } = await sendReplacing(request(), sig('t.add', [1, 100]).toDict());
    assert.equal(sent.length, 1);
    const m = sent[0]!.input;
    assert.equal(applied.id, ID);
    assert.equal(m.task, 't.add');
    assert.deepEqual(m.args, [1, 100], 'no partial args: the replacement is sent as sig.delay() is');
    assert.equal(m.id, ID);
    assert.equal(m.parentId, ID);
    assert.equal(m.rootId, ROOT);
    assert.equal(m.group, GROUP);
    assert.equal(m.groupIndex, 2);
    assert.deepEqual(m.embed?.chord, BODY);
    assert.deepEqual(m.embed?.chain, [AFTER, NEXT], 'the rest of the chain, in wire order, with its ids');
    assert.deepEqual(m.embed?.callbacks, [CB]);
    assert.deepEqual(m.embed?.errbacks, [EB]);
  });

  it("a chain: its last step takes the id, the membership and the callbacks; every step the errbacks; the task's chain follows", async () => {
    const { sent, applied } = await sendReplacing(request(), chain(sig('t.mul', [1, 2]), sig('t.add', [1])).toDict());
    assert.equal(sent.length, 1);
    const first = sent[0]!.input;
    assert.equal(first.task, 't.mul');
    assert.notEqual(first.id, ID);
    assert.equal(first.group, null, 'only the final step is the chord part');
    assert.equal(first.embed?.chord, null);
    assert.deepEqual(first.embed?.errbacks, [EB]);
    assert.equal(first.embed?.callbacks, null);
    const rest = first.embed!.chain!;
    assert.deepEqual(
      rest.map((s) => s.options.task_id),
      [AFTER.options.task_id, NEXT.options.task_id, ID],
      'next is the last element: the replacement chain, then the task chain',
    );
    const last = rest[2]!.options;
    assert.equal(last.group_id, GROUP);
    assert.equal(last.group_index, 2);
    assert.deepEqual(last.chord, BODY);
    assert.deepEqual(last.link, [CB]);
    assert.deepEqual(last.link_error, [EB]);
    assert.equal(applied.id, ID, "the replacement's result is under the task's id");
  });

  it('a group: a chord whose body is celery.accumulate(index=0) with the task id and links; the header waits on the join', async () => {
    const { sent, backend, applied } = await sendReplacing(request({ embed: { chain: [NEXT], chord: null, errbacks: null, callbacks: [CB] } }), group(sig('t.add', [1, 1]), sig('t.add', [2, 2])).toDict(), 'ts');
    assert.equal(sent.length, 2);
    assert.equal(applied.id, ID);
    const body = sent[0]!.input.embed!.chord!;
    assert.equal(body.task, 'celery.accumulate');
    assert.deepEqual(body.kwargs, { index: 0 });
    assert.equal(body.options.queue, 'ts', "the body goes to the replaced task's queue");
    assert.equal(body.options.task_id, ID);
    assert.deepEqual(body.options.link, [CB]);
    assert.deepEqual(body.options.chain, [NEXT]);
    assert.deepEqual(
      sent.map((s) => [s.input.group, s.input.groupIndex]),
      [
        [sent[0]!.input.group, 0],
        [sent[0]!.input.group, 1],
      ],
    );
    // The join waits for the 2 parts.
    assert.equal(await backend.chordPartReturn({ groupId: sent[0]!.input.group!, groupIndex: 0, entry: Buffer.from('a') }), undefined);
    assert.equal((await backend.chordPartReturn({ groupId: sent[0]!.input.group!, groupIndex: 1, entry: Buffer.from('b') }))?.length, 2);
  });

  it("a chord: its body takes the task's place", async () => {
    const { sent, applied } = await sendReplacing(request(), chord([sig('t.add', [1, 1])], sig('t.tsum')).toDict());
    assert.equal(applied.id, ID);
    const body = sent[0]!.input.embed!.chord!;
    assert.equal(body.options.task_id, ID);
    assert.equal(body.options.group_id, GROUP);
    assert.deepEqual(body.options.chord, BODY);
    assert.deepEqual(body.options.chain, [AFTER, NEXT]);
  });

  it('refuses what is not a signature, an empty chain, a signature in a chord, a workflow ending in a group', () => {
    const refuse = (v: unknown, pattern: RegExp) =>
      assert.throws(
        () => replacementOf(request(), signatureDictOf(v, 'replace')),
        (e: unknown) => e instanceof ValidationError && pattern.test(e.message) && e.hint !== undefined,
      );
    refuse(42, /^replace\(\) takes a signature, got a number — pass sig\(task, args\)/);
    refuse({ args: [] }, /got an object without a task name \(keys: args\)/);
    refuse([sig('t.add')], /got an array/);
    refuse({ ...sig('t.add').toDict(), options: { chord: BODY } }, /must not be part of a chord/);
    refuse({ task: 'celery.chain', args: [], kwargs: { tasks: [] }, options: {}, subtask_type: 'chain', immutable: false }, /the chain is empty/);
    refuse(chain(sig('t.add', [1, 1]), group(sig('t.a'), sig('t.b'))).toDict(), /has no final task/);
    refuse({ ...sig('t.add').toDict(), subtask_type: 'xmap' }, /canvas type "xmap" is not supported/);
  });
});

describe('addToChord(): the count and the message', () => {
  const worker = (c: ReturnType<typeof capture>, store: ResultStore | undefined = c.store): CanvasWorker => ({
    store,
    logger: createLogger({ level: 'silent' } as never),
    rt: { producer: { sendFollowUp: c.sender.sendFollowUp } as never, registry: new Map() },
  });

  it('counts one more part, then sends it as a member of the same chord (same index), parent the task', async () => {
    const c = capture();
    await c.backend.setChordSize(GROUP, 2);
    const added = await addToChord(worker(c), request(), sig('t.add', [5, 5]).toDict(), false);
    assert.equal(c.sent.length, 1);
    const m = c.sent[0]!.input;
    assert.equal(m.id, added.id);
    assert.equal(m.group, GROUP);
    assert.equal(m.groupIndex, 2);
    assert.deepEqual(m.embed?.chord, BODY);
    assert.equal(m.rootId, ROOT);
    assert.equal(m.parentId, ID);
    assert.equal(m.embed?.chain, null, "the task's own chain does not follow the added part");
    // Two header parts and the added one complete the join; two do not.
    assert.equal(await c.backend.chordPartReturn({ groupId: GROUP, groupIndex: 0, entry: Buffer.from('a') }), undefined);
    assert.equal(await c.backend.chordPartReturn({ groupId: GROUP, groupIndex: 1, entry: Buffer.from('b') }), undefined);
    assert.equal((await c.backend.chordPartReturn({ groupId: GROUP, groupIndex: 2, entry: Buffer.from('c') }))?.length, 3);
  });

  it('lazy: counted, not sent; the signature returned carries id and membership', async () => {
    const c = capture();
    await c.backend.setChordSize(GROUP, 1);
    const added = await addToChord(worker(c), request(), chain(sig('t.a'), sig('t.b')).toDict(), true);
    assert.equal(c.sent.length, 0);
    const steps = (added.signature.kwargs as { tasks: SignatureDict[] }).tasks;
    assert.equal(steps[1]!.options.task_id, added.id, "a chain's last step is the part");
    assert.equal(steps[1]!.options.group_id, GROUP);
    assert.equal(steps[0]!.options.group_id, undefined);
  });

  it('refuses outside a chord header, a group, and a backend without a join', async () => {
    const c = capture();
    await assert.rejects(addToChord(worker(c), request({ group: GROUP, embed: { chain: null, chord: null, errbacks: null } }), sig('t.a').toDict(), false), (e: unknown) => e instanceof ValidationError && /is not part of a chord header — call it from a task sent in a chord header/.test(e.message));
    await assert.rejects(addToChord(worker(c), request(), group(sig('t.a'), sig('t.b')).toDict(), false), (e: unknown) => e instanceof ValidationError && /a group adds more than one part/.test(e.message));
    const noJoin = new ResultStore({ ...createMemoryBackend(), kind: 'postgres', addToChord: undefined } as never);
    await assert.rejects(addToChord(worker(c, noJoin), request(), sig('t.a').toDict(), false), (e: unknown) => e instanceof ConfigError && /the postgres result backend cannot grow a chord/.test(e.message));
    assert.equal(c.sent.length, 0);
  });
});

describe('a task calling replace() or addToChord()', () => {
  const job = (fn: (...a: unknown[]) => unknown, extra: Partial<ExecJob> = {}): { registry: Map<string, never>; job: ExecJob } => ({
    registry: new Map([['t.x', { name: 't.x', fn, options: {} }]]) as never,
    job: { jobId: '1', task: 't.x', args: [], request: { id: ID } as RequestInfo, ...extra },
  });
  const run = (fn: (...a: unknown[]) => unknown, extra: Partial<ExecJob> = {}) => {
    const j = job(fn, extra);
    return executeJob(j.registry, j.job) as ExecOutcome | Promise<ExecOutcome>;
  };

  it('ends as replaced, carrying the signature dict (sync and async tasks)', async () => {
    const o = await run(() => currentTask().replace(si('t.add', [1, 2])));
    assert.equal(o.kind, 'replaced');
    assert.deepEqual(o.kind === 'replaced' && o.replacement, si('t.add', [1, 2]).toDict());
    const a = await run(async () => {
      await Promise.resolve();
      return currentTask().replace(sig('t.add').toDict());
    });
    assert.equal(a.kind, 'replaced');
  });

  it('a bad replacement fails the task with the ValidationError', async () => {
    const o = await run(() => currentTask().replace('t.add' as never));
    assert.equal(o.kind, 'failure');
    assert.equal(o.kind === 'failure' && o.exc.exc_type, 'ValidationError');
  });

  it('after the task ended, the kept context refuses with ERR_TASK_ENDED', async () => {
    let kept: ReturnType<typeof currentTask> | undefined;
    await run(() => {
      kept = currentTask();
      return 1;
    });
    assert.throws(() => kept!.replace(sig('t.a')), (e: unknown) => e instanceof CeleriacError && e.code === 'ERR_TASK_ENDED' && /call replace\(\) while the task runs/.test(e.message));
    await assert.rejects(kept!.addToChord(sig('t.a')), (e: unknown) => e instanceof CeleriacError && e.code === 'ERR_TASK_ENDED');
  });

  it('addToChord goes to the worker hook; without one it says a result backend is needed', async () => {
    const calls: Array<[SignatureDict, boolean]> = [];
    const o = await run(async () => (await currentTask().addToChord(sig('t.a'), { lazy: true })).id, {
      addToChord: async (d, lazy) => {
        calls.push([d, lazy]);
        return { id: 'new-id', signature: d };
      },
    });
    assert.deepEqual(o.kind === 'success' && o.value, 'new-id');
    assert.deepEqual(calls, [[sig('t.a').toDict(), true]]);
    const none = await run(() => currentTask().addToChord(sig('t.a')));
    assert.equal(none.kind === 'failure' && none.exc.exc_type, 'CeleriacError');
    assert.match(none.kind === 'failure' ? String(none.exc.exc_message[0]) : '', /keeps no results.*configure a Redis, SQLite or memory result backend/);
  });
});

describe('celery.accumulate', () => {
  const acc = canvasBuiltin('celery.accumulate', new Map())!;
  it('returns args[index], or all args, as Celery does', () => {
    assert.deepEqual(acc.fn!([1, 2], { index: 0 }), [1, 2]);
    assert.equal(acc.fn!('a', 'b', { index: -1 }), 'b');
    assert.deepEqual(acc.fn!('a', 'b', {}), ['a', 'b']);
    assert.throws(() => acc.fn!('a', { index: 3 }), /tuple index out of range/);
  });
});

describe('a chain sent ahead of an existing chain', () => {
  it('keeps the existing chain after its own steps (wire order: next step last)', async () => {
    const c = capture();
    await applyDict(c.sender, chain(sig('t.a'), sig('t.b'), sig('t.c')).toDict(), { chain: [AFTER, NEXT] });
    assert.deepEqual(
      c.sent[0]!.input.embed!.chain!.map((s) => s.task + (s.args.length ? String(s.args[0]) : '')),
      ['t.add20', 't.add10', 't.c', 't.b'],
    );
  });
});
