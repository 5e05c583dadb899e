/**
 * Start-up retry (Celery's broker_connection_retry_on_startup): which errors
 * are retried, the countdown lines, the limit, and the settings.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { connectWithRetry, DEFAULT_STARTUP_MAX_RETRIES, startupRetrySettings } from '../../../src/cli/startup-retry.ts';
import { ConfigError, ConnectionError } from '../../../src/errors.ts';

const refused = (): ConnectionError => new ConnectionError('cannot connect the redis broker to 127.0.0.1:1: connection refused', { hint: 'check host and port' });

describe('start-up connection retry', () => {
  it('retries a refused connection with a countdown until it connects', async () => {
    const lines: string[] = [];
    let calls = 0;
    await connectWithRetry(
      async () => {
        if (++calls < 3) throw refused();
      },
      { enabled: true, maxRetries: 100, warn: (m) => lines.push(m), intervalS: () => 0.01 },
    );
    assert.equal(calls, 3);
    assert.deepEqual(lines, [
      'cannot connect the redis broker to 127.0.0.1:1: connection refused; trying again in 0.01 seconds... (1/100)',
      'cannot connect the redis broker to 127.0.0.1:1: connection refused; trying again in 0.01 seconds... (2/100)',
      'connected after 3 attempts',
    ]);
  });

  it('gives up after brokerConnectionMaxRetries retries with a ConnectionError saying so', async () => {
    let calls = 0;
    await assert.rejects(
      connectWithRetry(
        async () => {
          calls++;
          throw refused();
        },
        { enabled: true, maxRetries: 2, warn: () => undefined, intervalS: () => 0.001 },
      ),
      (e: unknown) => e instanceof ConnectionError && /gave up after 3 attempts \(brokerConnectionMaxRetries is 2\)/.test(e.message),
    );
    assert.equal(calls, 3);
  });

  it('does not retry when turned off, nor errors that waiting cannot fix', async () => {
    for (const [err, enabled] of [
      [refused(), false],
      [new ConnectionError('wrong password', { code: 'ERR_AUTH' }), true],
      [new ConnectionError('bad certificate', { code: 'ERR_TLS' }), true],
      [new ConfigError('insecure'), true],
    ] as const) {
      let calls = 0;
      await assert.rejects(
        connectWithRetry(
          async () => {
            calls++;
            throw err;
          },
          { enabled, maxRetries: 5, warn: () => undefined, intervalS: () => 0.001 },
        ),
        (e: unknown) => e === err,
      );
      assert.equal(calls, 1, err.message);
    }
  });

  it('stops waiting when the signal aborts', async () => {
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 20);
    const started = Date.now();
    await assert.rejects(connectWithRetry(() => Promise.reject(refused()), { enabled: true, maxRetries: 0, warn: () => undefined, signal: controller.signal, intervalS: () => 60 }), ConnectionError);
    assert.ok(Date.now() - started < 5000);
  });

  it("reads Celery's defaults and the two settings", () => {
    assert.deepEqual(startupRetrySettings({}), { enabled: true, maxRetries: DEFAULT_STARTUP_MAX_RETRIES });
    assert.deepEqual(startupRetrySettings({ brokerConnectionRetryOnStartup: false, brokerConnectionMaxRetries: 5 }), { enabled: false, maxRetries: 5 });
    assert.deepEqual(startupRetrySettings({ brokerConnectionMaxRetries: null }), { enabled: true, maxRetries: 0 });
  });
});
