import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { z } from 'zod';
import { bindArguments, parseRateLimit, validateArguments, type TaskDefinition } from '../../../src/client/task.ts';
import { decideRetry, retryCountdownSeconds } from '../../../src/worker/retry-policy.ts';
import { TokenBucket } from '../../../src/worker/rate-limit.ts';
import { ValidationError } from '../../../src/errors.ts';

const def = (options: TaskDefinition['options']): TaskDefinition => ({ name: 't', fn: () => undefined, options });

describe('kwargs binding convention', () => {
  it('binds by declared parameter names, like Python', () => {
    assert.deepEqual(bindArguments(def({ params: ['x', 'y', 'z'] }), [1], { z: 3, y: 2 }), [1, 2, 3]);
    assert.deepEqual(bindArguments(def({ params: ['x', 'y', 'z'] }), [1], { z: 3 }), [1, undefined, 3]);
  });
  it('refuses unknown and duplicate names, and kwargs without params', () => {
    assert.throws(() => bindArguments(def({ params: ['x'] }), [], { q: 1 }), /unexpected keyword argument "q"/);
    assert.throws(() => bindArguments(def({ params: ['x'] }), [1], { x: 1 }), /multiple values/);
    assert.throws(() => bindArguments(def({}), [], { x: 1 }), ValidationError);
  });
  it('passes the kwargs object last with kwargs: true', () => {
    assert.deepEqual(bindArguments(def({ kwargs: true }), [1], { a: 2 }), [1, { a: 2 }]);
    assert.deepEqual(bindArguments(def({ kwargs: true }), [], {}), [{}]);
  });
});

describe('schema validation', () => {
  it('names the failing field', () => {
    const d = def({ schema: { args: z.tuple([z.number(), z.string().max(3)]) } });
    assert.deepEqual(validateArguments(d, [1, 'ab'], {}).args, [1, 'ab']);
    assert.throws(() => validateArguments(d, [1, 'abcd'], {}), (e: unknown) => e instanceof ValidationError && e.field === 'args[1]');
  });
});

describe('retry policy', () => {
  const settings = { taskDefaultRetryDelay: 180, taskMaxRetries: 3 as number | null };
  it('uses an explicit countdown, then backoff, then the default delay', () => {
    assert.equal(retryCountdownSeconds({}, settings, 0, 5), 5);
    assert.equal(retryCountdownSeconds({}, settings, 0, undefined), 180);
    assert.equal(retryCountdownSeconds({ retryBackoff: 2, retryJitter: false }, settings, 3, undefined), 16);
    assert.equal(retryCountdownSeconds({ retryBackoff: true, retryJitter: false, retryBackoffMax: 10 }, settings, 10, undefined), 10);
    assert.equal(retryCountdownSeconds({ retryBackoff: true }, settings, 3, undefined, () => 0.999), 8);
    assert.equal(retryCountdownSeconds({ retryBackoff: true }, settings, 3, undefined, () => 0), 0);
  });
  it('stops at maxRetries (task, call or setting; null = unlimited)', () => {
    const asked = { exc: null, traceback: null, auto: false };
    assert.equal(decideRetry({}, settings, 3, asked, 0).retry, false);
    assert.equal(decideRetry({}, settings, 2, asked, 0).retry, true);
    assert.equal(decideRetry({ maxRetries: 5 }, settings, 3, asked, 0).retry, true);
    assert.equal(decideRetry({}, settings, 99, { ...asked, maxRetries: null }, 0).retry, true);
    assert.deepEqual(decideRetry({}, settings, 0, { ...asked, countdown: 2 }, 1000), { retry: true, eta: 3000 });
  });
});

describe('rate limits', () => {
  it("parses Celery's format", () => {
    assert.equal(parseRateLimit('10/s'), 10);
    assert.equal(parseRateLimit('120/m'), 2);
    assert.equal(parseRateLimit('36/h'), 0.01);
    assert.equal(parseRateLimit('5'), 5);
    assert.equal(parseRateLimit(''), 0);
    assert.throws(() => parseRateLimit('fast'), /Invalid rate limit/);
  });
  it('token bucket: capacity 1, refills at the rate', () => {
    const b = new TokenBucket(10, 1, 0);
    assert.equal(b.take(0), 0);
    assert.equal(b.take(0), 100);
    assert.equal(b.take(50), 50);
    assert.equal(b.take(100), 0);
  });
});
