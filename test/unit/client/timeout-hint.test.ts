/**
 * A client that waits in vain learns the likely causes: no worker on the
 * queue, or a message the worker refused and dead-lettered without a result.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { createApp } from '../../../src/client/app.ts';
import { TimeoutError } from '../../../src/errors.ts';

it('a result timeout names the dead-letter queue as a cause', async () => {
  const app = createApp({ brokerUrl: 'memory://', resultBackend: 'memory://' });
  try {
    const r = await app.sendTask('nobody.runs_this', []);
    await assert.rejects(r.get({ timeoutMs: 50 }), (e: unknown) => e instanceof TimeoutError && /is a worker consuming the task's queue\?.*dead-lettered to <queue>\.dlq/.test(e.message));
  } finally {
    await app.close();
  }
});
