/**
 * Connection failures that reach users are Celeriac errors naming the
 * engine, role and host (issue 21 #7), not ioredis's raw errors.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConnectionError, DecodeError } from '../../../../src/errors.ts';
import { asRedisConnectionError } from '../../../../src/transport/redis/connection.ts';

const URL_ = 'redis://:secret@10.1.2.3:6380/2';

describe('asRedisConnectionError', () => {
  it("turns ioredis's MaxRetriesPerRequestError and closed-connection errors into a ConnectionError naming the host, never the password", () => {
    const raw = Object.assign(new Error('Reached the max retries per request limit (which is 20). Refer to "maxRetriesPerRequest" option for details.'), { name: 'MaxRetriesPerRequestError' });
    for (const err of [raw, new Error('Connection is closed.'), Object.assign(new Error('connect ECONNREFUSED 10.1.2.3:6380'), { code: 'ECONNREFUSED' })]) {
      const e = asRedisConnectionError(err, 'result backend', URL_);
      assert.ok(e instanceof ConnectionError);
      assert.match(e.message, /redis result backend at 10\.1\.2\.3:6380/);
      assert.doesNotMatch(e.message, /secret/);
    }
  });

  it('leaves Celeriac errors and Redis reply errors alone', () => {
    const ours = new DecodeError('bad');
    assert.equal(asRedisConnectionError(ours, 'broker', URL_), ours);
    const reply = Object.assign(new Error('NOPERM this user has no permissions'), { name: 'ReplyError' });
    assert.equal(asRedisConnectionError(reply, 'broker', URL_), reply);
  });
});
