/**
 * Issue 15 item 6: production refusals arrived in rounds — the transport
 * and credential policy first, then (after fixing those) message signing
 * (CEL-007). One start now lists every refusal, each with its id and fix,
 * from one pure report that `celeriac audit` can share.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createApp } from '../../../src/client/app.ts';
import { InsecureConfigError } from '../../../src/config/policy.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { resetSecurityEvents, securityCounters } from '../../../src/observability/security-events.ts';

describe('all refusals of a start at once (issue 15 item 6)', () => {
  it('transport, credentials, content and message signing in one error', async () => {
    resetSecurityEvents();
    const app = createApp({
      brokerUrl: 'redis://guest:guest@127.0.0.1:6379/0',
      acceptContent: ['json', 'pickle'],
      env: { NODE_ENV: 'production' },
      logger: createLogger({ level: 'silent' }),
    });
    try {
      const err = await app.broker().then(() => undefined, (e: unknown) => e);
      assert.ok(err instanceof InsecureConfigError, String(err));
      const ids = err.findings.map((f) => `${f.id} ${f.setting}`).sort();
      assert.deepEqual(ids, ['CEL-003 brokerUrl', 'CEL-005 acceptContent', 'CEL-007 securitySigningKeys', 'CEL-011 brokerUrl']);
      for (const f of err.findings) {
        assert.ok(f.fix.length > 10, `${f.id} has a fix`);
        assert.ok(err.message.includes(`[${f.id}] ${f.setting}`) && err.message.includes(f.fix.slice(0, 40)), `${f.id} is in the message with its fix`);
      }
      assert.match(err.hint ?? '', /fix under each of the 4 settings/);
      assert.doesNotMatch(`${err.message} ${err.hint}`, /app module|-A /, 'the hint is about the cause');
      assert.equal(securityCounters().policy_refusal, 4);
    } finally {
      await app.close();
    }
  });

  it('weaker signing modes are findings with a fix, logged as warnings', async () => {
    const lines: string[] = [];
    const logger = createLogger({ level: 'warn', destination: { write: (l: string) => void lines.push(l) } as never });
    const app = createApp({ brokerUrl: 'memory://all-refusals', env: { NODE_ENV: 'production' }, unsafeAcceptUnsigned: true, logger });
    try {
      app.enforceSecurityPolicy();
    } finally {
      await app.close();
    }
    const w = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.securityEvent === 'policy_warning' && l.setting === 'unsafeAcceptUnsigned');
    assert.ok(w, lines.join('\n'));
    assert.equal(w.id, 'CEL-007');
    assert.match(String(w.fix), /celeriac secrets generate ed25519/);
  });
});
