/**
 * Canvas serialisation against Celery 5.2.6: the signature dicts Python
 * produces (test/fixtures/canvas/celery-5.2.6-signatures.json, generated
 * with Celery 5.2.6), and the messages a Python client sends for a chain,
 * a group and a chord (the golden vectors in test/fixtures/celery-5.2.6/redis/).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { chain, chord, chunks, fromDict, group, map, si, sig, starmap } from '../../../src/index.ts';
import { applyDict, type CanvasSender } from '../../../src/client/canvas/apply.ts';
import type { FollowUpSend } from '../../../src/client/producer.ts';
import { createMemoryBackend } from '../../../src/transport/memory/backend.ts';
import { ResultStore } from '../../../src/client/results.ts';
import type { SignatureDict } from '../../../src/protocol/types.ts';

const python = JSON.parse(readFileSync(new URL('../../fixtures/canvas/celery-5.2.6-signatures.json', import.meta.url), 'utf8')) as { cases: Record<string, SignatureDict> };
const vector = (name: string) => JSON.parse(readFileSync(new URL(`../../fixtures/celery-5.2.6/redis/${name}.json`, import.meta.url), 'utf8')) as {
  result_id: string;
  redis_list_entries: Array<{ envelope: { headers: Record<string, unknown> }; body_decoded: [unknown[], Record<string, unknown>, Record<string, unknown>] }>;
};

/** Python's dict with the keys sorted, as the fixture stores it (JSON object key order is not part of the wire). */
const sorted = (v: unknown): unknown =>
  Array.isArray(v) ? v.map(sorted) : v && typeof v === 'object' ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, x]) => [k, sorted(x)])) : v;

describe('signature dicts equal Celery 5.2.6', () => {
  const cases: Record<string, () => { toDict(): SignatureDict }> = {
    sig: () => sig('tasks.add', [1, 2]),
    si_options: () => si('tasks.add', [1, 2], {}, { queue: 'q', countdown: 3, priority: 5 }),
    kwargs: () => sig('tasks.add', [], { x: 1, y: 2 }),
    link_error: () => sig('tasks.add', [1]).linkError(sig('tasks.record')),
    link: () => sig('tasks.add', [1]).link(sig('tasks.record')),
    chain: () => chain(sig('tasks.add', [1, 2]), sig('tasks.add', [3])),
    group: () => group(sig('tasks.add', [1, 2]), sig('tasks.add', [3, 4])),
    chord: () => chord([sig('tasks.add', [1, 2]), sig('tasks.add', [3, 4])], sig('tasks.tsum')),
    map: () => map('tasks.add', [1, 2]),
    starmap: () => starmap('tasks.add', [[1, 2], [3, 4]]),
    chunks_group: () => chunks('tasks.add', [[1, 2], [3, 4], [5, 6]], 2),
    chain_group_upgrade: () => chain(sig('tasks.add', [1, 2]), group(sig('tasks.add', [1]), sig('tasks.add', [2])), sig('tasks.tsum')),
  };
  for (const [name, build] of Object.entries(cases)) {
    it(name, () => {
      assert.ok(python.cases[name], `fixture has ${name}`);
      assert.deepEqual(sorted(build().toDict()), python.cases[name]);
      // And a Python dict reads back to the same canvas.
      assert.deepEqual(sorted(fromDict(python.cases[name]!).toDict()), python.cases[name]);
    });
  }

  it('unknown options are refused at run time, not dropped', () => {
    assert.throws(() => sig('tasks.add', [], {}, { countdwn: 3 } as never), /unknown signature option "countdwn"/);
  });
});

/** Capture what a canvas sends. */
function capture(): { sender: CanvasSender; sent: FollowUpSend[]; store: ResultStore } {
  const store = new ResultStore(createMemoryBackend());
  const sent: FollowUpSend[] = [];
  return { sent, store, sender: { store, sendFollowUp: async (f) => void sent.push(f) } };
}

/** A signature dict without the ids Python generated (and its reply_to, a per-client oid). */
const shape = (d: unknown): unknown => {
  if (Array.isArray(d)) return d.map(shape);
  if (d && typeof d === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(d)) if (k !== 'task_id' && k !== 'reply_to') out[k] = shape(v);
    return out;
  }
  return d;
};

describe('messages equal what Celery 5.2.6 sends', () => {
  it('chain: only the first task is sent; the rest ride reversed in embed.chain; the chain id is the last step', async () => {
    const v = vector('canvas_chain');
    const c = capture();
    const applied = await applyDict(c.sender, chain(sig('tasks.add', [1, 2]), sig('tasks.add', [3]), sig('tasks.add', [4])).set({ taskId: v.result_id }).toDict());
    assert.equal(c.sent.length, 1);
    const [py] = v.redis_list_entries;
    const ours = c.sent[0]!.input;
    assert.deepEqual(ours.args, py!.body_decoded[0]);
    assert.deepEqual(shape(ours.embed), shape(py!.body_decoded[2]));
    const chainIds = (ours.embed!.chain ?? []).map((s) => s.options.task_id);
    assert.equal(chainIds[0], v.result_id, 'the last step (first in embed.chain) carries the chain id');
    assert.equal(applied.id, v.result_id);
    assert.equal(ours.rootId, ours.id, 'root_id is the first task');
    assert.equal(ours.parentId ?? null, py!.envelope.headers.parent_id);
  });

  it('group: one message per task, group = the group id, group_index null', async () => {
    const v = vector('canvas_group');
    const c = capture();
    await applyDict(c.sender, group(sig('tasks.add', [1, 1]), sig('tasks.add', [2, 2])).set({ taskId: v.result_id }).toDict());
    assert.equal(c.sent.length, v.redis_list_entries.length);
    c.sent.forEach((s, i) => {
      const py = v.redis_list_entries[i]!;
      assert.equal(s.input.group, py.envelope.headers.group);
      assert.equal(s.input.groupIndex ?? null, py.envelope.headers.group_index);
      assert.deepEqual(s.input.args, py.body_decoded[0]);
      assert.deepEqual(shape(s.input.embed), shape(py.body_decoded[2]));
      assert.equal(s.input.rootId, s.input.id);
    });
  });

  it('chord: the size is set first; headers carry group, group_index 0..n-1 and the body in embed.chord', async () => {
    const v = vector('canvas_chord');
    const c = capture();
    const applied = await applyDict(c.sender, chord([sig('tasks.add', [1, 1]), sig('tasks.add', [2, 2])], sig('tasks.tsum')).set({ taskId: v.result_id }).toDict());
    assert.equal(applied.id, v.result_id, 'the chord id is the body id');
    assert.equal(c.sent.length, 2);
    c.sent.forEach((s, i) => {
      const py = v.redis_list_entries[i]!;
      assert.equal(s.input.groupIndex, py.envelope.headers.group_index);
      assert.equal(s.input.group, applied.groupId);
      assert.deepEqual(s.input.args, py.body_decoded[0]);
      assert.deepEqual(shape(s.input.embed), shape(py.body_decoded[2]));
      assert.equal((s.input.embed!.chord!.options as Record<string, unknown>).task_id, v.result_id);
    });
    // The join waits for exactly the header: two parts complete it, the second returns both in order.
    const backend = c.store.backend;
    const e = (n: number) => Buffer.from(JSON.stringify([1, `id${n}`, 'SUCCESS', n]));
    assert.equal(await backend.chordPartReturn!({ groupId: applied.groupId!, groupIndex: 1, entry: e(1) }), undefined);
    assert.deepEqual((await backend.chordPartReturn!({ groupId: applied.groupId!, groupIndex: 0, entry: e(0) }))?.map(String), [e(0), e(1)].map(String));
  });

  it('a chord with an empty header sends its body at once with []', async () => {
    const c = capture();
    await applyDict(c.sender, chord([], sig('tasks.tsum')).toDict());
    assert.equal(c.sent.length, 1);
    assert.deepEqual(c.sent[0]!.input.args, [[]]);
  });
});
