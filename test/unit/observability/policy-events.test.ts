/**
 * The policy's findings, logged and counted by its callers' shared helpers
 * (src/observability/policy-events.ts): the lines and counters of start-up.
 */
import assert from 'node:assert/strict';
import { beforeEach, describe, it } from 'node:test';
import { InsecureConfigError, type PolicyInput } from '../../../src/config/policy.ts';
import { ConfigError } from '../../../src/errors.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { enforcePolicy, recordPolicyRefusals } from '../../../src/observability/policy-events.ts';
import { resetSecurityEvents, securityCounters, onSecurityEvent } from '../../../src/observability/security-events.ts';

const STRONG = 'tR4vQ9zLm2Xw8KpNa7Yc';
const SECURE_BROKER = `rediss://worker:${STRONG}@redis.internal:6379/0`;
const SECURE_BACKEND = `rediss://worker:${STRONG}@redis.internal:6379/1`;

function prod(extra: Partial<PolicyInput> = {}): PolicyInput {
  return { mode: 'production', brokerUrl: SECURE_BROKER, resultBackend: SECURE_BACKEND, acceptContent: ['json'], resultAcceptContent: ['json', 'msgpack'], taskSerializer: 'json', resultSerializer: 'json', ...extra };
}
function dev(extra: Partial<PolicyInput> = {}): PolicyInput {
  return { ...prod(extra), mode: 'development', ...extra };
}

describe('enforcePolicy', () => {
  beforeEach(() => resetSecurityEvents());

  it('throws one error listing every refusal with setting and fix, without secrets', () => {
    const input = prod({
      brokerUrl: 'redis://worker:Weak-pw-7@redis.internal:6379/0',
      resultBackend: 'redis://redis.internal:6379/1',
      acceptContent: ['json', 'pickle'],
    });
    let err: unknown;
    try {
      enforcePolicy(input);
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof InsecureConfigError);
    assert.ok(err instanceof ConfigError);
    assert.equal(err.code, 'ERR_INSECURE_CONFIG');
    assert.equal(err.findings.length, 5);
    for (const s of ['[CEL-003] brokerUrl', '[CEL-011] brokerUrl', '[CEL-015] resultBackend', '[CEL-014] resultBackend', '[CEL-005] acceptContent', 'fix:', '${file:/run/secrets/redis_password}']) {
      assert.ok(err.message.includes(s), `missing ${s} in\n${err.message}`);
    }
    assert.ok(!err.message.includes('Weak-pw-7'), err.message);
    assert.equal(securityCounters().policy_refusal, 5);
  });

  it('logs warnings through the logger and counts them', () => {
    const lines: string[] = [];
    const logger = createLogger({ level: 'info', destination: { write: (s: string) => void lines.push(s) } });
    const report = enforcePolicy(dev({ brokerUrl: 'redis://:Weak-pw-7@localhost:6379/0', resultBackend: undefined }), logger);
    assert.equal(report.refusals.length, 0);
    assert.equal(report.warnings.length, 2);
    assert.equal(lines.length, 2);
    const entries = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.ok(entries.every((e) => e.securityEvent === 'policy_warning' && e.level === 40));
    assert.deepEqual(entries.map((e) => e.id).sort(), ['CEL-003', 'CEL-011']);
    assert.ok(!lines.join('').includes('Weak-pw-7'));
    assert.equal(securityCounters().policy_warning, 2);
  });
});


describe('recordPolicyRefusals', () => {
  beforeEach(() => resetSecurityEvents());

  it('counts each refusal with the suffix on its reason', () => {
    const seen: string[] = [];
    const off = onSecurityEvent((e) => seen.push(String(e.fields.reason)));
    try {
      recordPolicyRefusals([{ id: 'CEL-011', setting: 'brokerUrl', message: 'weak', fix: 'f' }], ' (reload refused)');
    } finally {
      off();
    }
    assert.deepEqual(seen, ['weak (reload refused)']);
    assert.equal(securityCounters().policy_refusal, 1);
  });
});
