import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { anyBindingMatches, bindingMatches, topicMatches } from '../../../../src/transport/virtual/topic.ts';

describe('topic matching (AMQP 0-9-1 rules)', () => {
  const cases: Array<[string, string, boolean]> = [
    ['#', 'task.sent', true],
    ['#', 'worker', true],
    ['#', '', true],
    ['task.*', 'task.sent', true],
    ['task.*', 'task.multi', true],
    ['task.*', 'task', false],
    ['task.*', 'task.a.b', false],
    ['task.#', 'task', true],
    ['task.#', 'task.a.b', true],
    ['task.#', 'tasks.a', false],
    ['worker.#', 'worker.heartbeat', true],
    ['*.heartbeat', 'worker.heartbeat', true],
    ['*.heartbeat', 'heartbeat', false],
    ['*.heartbeat', 'a.worker.heartbeat', false],
    ['#.heartbeat', 'heartbeat', true],
    ['#.heartbeat', 'a.b.heartbeat', true],
    ['a.#.b', 'a.b', true],
    ['a.#.b', 'a.x.y.b', true],
    ['a.#.b', 'a.x.y.c', false],
    ['#.#', 'a', true],
    ['*', 'a', true],
    ['*', 'a.b', false],
    ['*', '', false],
    ['', '', true],
    ['', 'a', false],
    ['task.sent', 'task.sent', true],
    ['task.sent', 'task.sentx', false],
    ['task.*.x', 'task.a.x', true],
    ['task.*.x', 'task.x', false],
  ];
  for (const [key, rk, want] of cases) {
    it(`${JSON.stringify(key)} ${want ? 'matches' : 'does not match'} ${JSON.stringify(rk)}`, () => {
      assert.equal(topicMatches(key, rk), want);
    });
  }

  it('stays fast on keys built to make backtracking matchers slow', () => {
    const key = Array.from({ length: 200 }, () => '#').join('.') + '.z';
    const rk = Array.from({ length: 2000 }, () => 'a').join('.');
    const t0 = performance.now();
    assert.equal(topicMatches(key, rk), false);
    assert.ok(performance.now() - t0 < 500);
  });

  it('fanout takes every key, direct only the equal one', () => {
    assert.equal(bindingMatches('fanout', '', 'anything.at.all'), true);
    assert.equal(bindingMatches('direct', 'oid-1', 'oid-1'), true);
    assert.equal(bindingMatches('direct', 'oid-1', 'oid-2'), false);
    assert.equal(bindingMatches('direct', '#', 'oid-2'), false);
    assert.equal(anyBindingMatches('topic', ['task.*', 'worker.#'], 'worker.online'), true);
    assert.equal(anyBindingMatches('topic', ['task.*'], 'worker.online'), false);
    assert.equal(anyBindingMatches('topic', [], 'worker.online'), false);
  });
});
