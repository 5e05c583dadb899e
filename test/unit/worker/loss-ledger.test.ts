import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LossLedger, lossReason, lostRuns } from '../../../src/worker/loss-ledger.ts';

describe('loss ledger', () => {
  it('counts lost runs by kind; suspects do not count against the limit', () => {
    const l = new LossLedger();
    l.record('a', 'suspect');
    assert.equal(lostRuns(l.get('a')!), 0);
    l.record('a', 'crash');
    l.record('a', 'crash');
    assert.equal(lostRuns(l.get('a')!), 2);
    assert.equal(lossReason(l.get('a')!), 'crashed its worker process 2 times');
    l.record('b', 'timeLimit');
    assert.equal(lossReason(l.get('b')!), 'hard time limit exceeded 1 time');
    l.record('c', 'settle');
    assert.equal(lossReason(l.get('c')!), 'its result could not be settled 1 time');
  });

  it('finalize marks an entry; forget removes it', () => {
    const l = new LossLedger();
    assert.equal(l.finalize('x').final, true);
    assert.equal(l.forget('x'), true);
    assert.equal(l.get('x'), undefined);
  });

  it('is bounded: the least recently touched entry goes first', () => {
    const l = new LossLedger(3);
    for (const id of ['a', 'b', 'c']) l.record(id, 'crash');
    l.record('a', 'crash');
    l.record('d', 'crash');
    assert.equal(l.size, 3);
    assert.equal(l.get('b'), undefined);
    assert.equal(l.get('a')!.crashes, 2);
  });
});
