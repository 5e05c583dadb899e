/**
 * The exception records a worker stores carry Celery's names and modules,
 * so a Python client raises the same exception classes.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as r from '../../../src/worker/exception-records.ts';

describe('exception records', () => {
  it("use Celery's, billiard's and kombu's names and modules", () => {
    assert.deepEqual(r.notRegistered('t.x'), { exc_type: 'NotRegistered', exc_message: ['t.x'], exc_module: 'celery.exceptions' });
    assert.deepEqual(r.expiredRevoked(), { exc_type: 'TaskRevokedError', exc_message: ['expired'], exc_module: 'celery.exceptions' });
    assert.deepEqual(r.argumentTypeError('bad'), { exc_type: 'TypeError', exc_message: ['bad'], exc_module: 'builtins' });
    assert.deepEqual(r.timeLimitExceeded(2.5), { exc_type: 'TimeLimitExceeded', exc_message: [2.5], exc_module: 'celery.exceptions' });
    assert.deepEqual(r.workerLost('process 1 died'), { exc_type: 'WorkerLostError', exc_message: ['Worker exited prematurely: process 1 died'], exc_module: 'billiard.exceptions' });
    assert.deepEqual(r.encodeError('x'), { exc_type: 'EncodeError', exc_message: ['x'], exc_module: 'kombu.exceptions' });
    assert.deepEqual(r.retryInFuture(), { exc_type: 'Retry', exc_message: ['Retry in the future'], exc_module: 'celery.exceptions' });
    assert.deepEqual(r.maxRetriesExceeded({ task: 't.x', id: 'i', args: [1, 'a'], kwargs: { k: true } }), {
      exc_type: 'MaxRetriesExceededError',
      exc_message: ["Can't retry t.x[i] args:(1, 'a') kwargs:{'k': True}"],
      exc_module: 'celery.exceptions',
    });
    assert.equal(r.redeliveryLimitExceeded('lost 3 runs').exc_message[0], 'task lost 3 runs; message dead-lettered');
  });

  it('mask URL credentials in stored messages', () => {
    const exc = r.redactException({ exc_type: 'ConnectionError', exc_message: ['cannot reach redis://user:s3cret@host:6379/0'], exc_module: 'builtins' });
    assert.doesNotMatch(String(exc.exc_message[0]), /s3cret/);
  });
});
