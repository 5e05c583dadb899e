import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { defaultProcesses } from '../../../src/worker/prefork/supervisor.ts';

describe('defaultProcesses', () => {
  it('leaves one CPU to the supervisor and the broker client', () => {
    assert.equal(defaultProcesses(100, 2), 1);
    assert.equal(defaultProcesses(100, 8), 7);
  });

  it('never starts more children than the concurrency, and always at least one', () => {
    assert.equal(defaultProcesses(3, 8), 3);
    assert.equal(defaultProcesses(1, 8), 1);
    assert.equal(defaultProcesses(100, 1), 1);
  });
});
