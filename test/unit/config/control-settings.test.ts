/**
 * Remote-control settings and the CEL-022 rule of the start-up policy:
 * a destructive command obeyed without a signature is refused in
 * production unless `unsafeAllowUnsignedControl`, and `celeriac audit`
 * reports the same finding.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runAudit } from '../../../src/audit/index.ts';
import {
  CONTROL_READ_ONLY_COMMANDS,
  controlPolicyInput,
  resolveControlSettings,
  signingConfigured,
  unsignedDestructiveCommands,
} from '../../../src/config/control-settings.ts';
import { resolveSettings } from '../../../src/config/options.ts';
import { evaluatePolicy, policyInputFromSettings, type PolicyInput } from '../../../src/config/policy.ts';
import { ConfigError } from '../../../src/errors.ts';

const STRONG = 'tR4vQ9zLm2Xw8KpNa7Yc';
const BASE: PolicyInput = { mode: 'production', brokerUrl: `rediss://worker:${STRONG}@redis.internal:6379/0`, unsafe: {} };

describe('control settings', () => {
  it('defaults: read-only inspect commands allowed, and allowed unsigned; no audit file', () => {
    const c = resolveControlSettings({});
    assert.deepEqual([...c.allow].sort(), [...CONTROL_READ_ONLY_COMMANDS].sort());
    assert.deepEqual([...c.allowUnsigned].sort(), [...CONTROL_READ_ONLY_COMMANDS].sort());
    assert.equal(c.auditLog, undefined);
    for (const m of ['revoke', 'shutdown', 'rate_limit', 'time_limit', 'pool_grow', 'pool_shrink', 'add_consumer', 'cancel_consumer', 'enable_events', 'disable_events', 'heartbeat']) {
      assert.ok(!c.allow.has(m), `${m} is opt-in`);
    }
  });

  it('groups expand; settings win over the environment; the environment takes JSON or comma lists', () => {
    assert.ok(resolveControlSettings({ workerControlAllow: ['@control'] }).allow.has('shutdown'));
    assert.ok(!resolveControlSettings({ workerControlAllow: ['@control'] }).allow.has('ping'));
    assert.ok(resolveControlSettings({ workerControlAllow: ['@all'] }).allow.has('ping'));
    const env = { CELERIAC_WORKER_CONTROL_ALLOW: 'ping, revoke', CELERIAC_WORKER_CONTROL_ALLOW_UNSIGNED: '["ping"]', CELERIAC_WORKER_CONTROL_AUDIT_LOG: '/var/log/w.jsonl' };
    const c = resolveControlSettings({}, env);
    assert.deepEqual([...c.allow].sort(), ['ping', 'revoke']);
    assert.deepEqual([...c.allowUnsigned], ['ping']);
    assert.equal(c.auditLog, '/var/log/w.jsonl');
    assert.deepEqual([...resolveControlSettings({ workerControlAllow: ['stats'] }, env).allow], ['stats']);
    assert.deepEqual([...resolveControlSettings({ workerControlAllowUnsigned: [] }, env).allowUnsigned], []);
    assert.throws(() => resolveControlSettings({}, { CELERIAC_WORKER_CONTROL_ALLOW: '["ping"' }), ConfigError);
    assert.throws(() => resolveControlSettings({ workerControlAllow: ['a.b'] }), ConfigError);
  });

  it('signing is judged from the settings without loading keys, like the worker', () => {
    assert.equal(signingConfigured({}), false);
    assert.equal(signingConfigured({ taskSerializer: 'auth' }), true);
    assert.equal(signingConfigured({ securitySigningKeys: 'k:ed25519-private:…' }), true);
    assert.equal(signingConfigured({}, { CELERIAC_VERIFY_KEYS_FILE: '/run/secrets/verify' }), true);
    assert.equal(signingConfigured({}, { CELERY_SECURITY_CERT_STORE: '/etc/celery/certs' }), true);
  });

  it('destructive commands obeyed unsigned: listed unsigned where signing is on, every allowed one where it is off', () => {
    assert.deepEqual(unsignedDestructiveCommands({ signing: true, allow: ['ping', 'shutdown'], allowUnsigned: ['ping'] }), []);
    assert.deepEqual(unsignedDestructiveCommands({ signing: true, allow: ['ping', 'shutdown'], allowUnsigned: ['ping', 'shutdown'] }), ['shutdown']);
    assert.deepEqual(unsignedDestructiveCommands({ signing: true, allow: ['ping'], allowUnsigned: ['shutdown'] }), [], 'not allowed at all: nothing obeyed');
    assert.deepEqual(unsignedDestructiveCommands({ signing: false, allow: ['ping', 'revoke', 'custom_cmd'], allowUnsigned: [] }), ['custom_cmd', 'revoke']);
  });
});

describe('policy: remote control (CEL-022)', () => {
  it('production: unsigned destructive control is refused, naming the commands and the override', () => {
    const r = evaluatePolicy({ ...BASE, control: { signing: true, allow: ['ping', 'shutdown', 'revoke'], allowUnsigned: ['ping', 'shutdown'] } });
    assert.equal(r.refusals.length, 1);
    const f = r.refusals[0]!;
    assert.equal(f.id, 'CEL-022');
    assert.equal(f.setting, 'workerControlAllowUnsigned');
    assert.match(f.message, /command shutdown would be obeyed without a signature/, 'only shutdown: revoke is signed-only here');
    assert.match(f.fix, /unsafeAllowUnsignedControl/);
    const off = evaluatePolicy({ ...BASE, control: { signing: false, allow: ['ping', 'revoke'], allowUnsigned: [] } });
    assert.equal(off.refusals[0]?.setting, 'workerControlAllow');
  });

  it('the override turns it into a warning; development warns; the defaults and signed-only destructive commands are clean', () => {
    const control = { signing: true, allow: ['shutdown'], allowUnsigned: ['shutdown'] };
    const over = evaluatePolicy({ ...BASE, control, unsafe: { unsafeAllowUnsignedControl: true } });
    assert.equal(over.refusals.length, 0);
    assert.ok(over.warnings.some((w) => w.id === 'CEL-022' && /accepted by unsafeAllowUnsignedControl/.test(w.message)));
    const dev = evaluatePolicy({ ...BASE, mode: 'development', control });
    assert.equal(dev.refusals.length, 0);
    assert.ok(dev.warnings.some((w) => w.id === 'CEL-022'));
    assert.deepEqual(evaluatePolicy({ ...BASE, control: controlPolicyInput({}) }), { refusals: [], warnings: [] });
    assert.deepEqual(evaluatePolicy({ ...BASE, control: { signing: true, allow: ['@control', 'shutdown', 'revoke'], allowUnsigned: ['ping'] } }).refusals, []);
    const stale = evaluatePolicy({ ...BASE, control: controlPolicyInput({}), unsafe: { unsafeAllowUnsignedControl: true } });
    assert.ok(stale.warnings.some((w) => w.setting === 'unsafeAllowUnsignedControl' && /no setting needs it/.test(w.message)));
  });

  it('policyInputFromSettings reads the control settings and the environment', () => {
    const settings = resolveSettings({ brokerUrl: BASE.brokerUrl, securityVerifyKeys: undefined, workerControlAllow: ['shutdown'], workerControlAllowUnsigned: ['shutdown'] });
    const input = policyInputFromSettings(settings, { CELERIAC_ENV: 'production', CELERIAC_VERIFY_KEYS: 'x' });
    assert.deepEqual(input.control, { signing: true, allow: ['shutdown'], allowUnsigned: ['shutdown'] });
    assert.ok(evaluatePolicy(input).refusals.some((f) => f.id === 'CEL-022'));
    const overridden = policyInputFromSettings(settings, { CELERIAC_ENV: 'production', CELERIAC_VERIFY_KEYS: 'x', CELERIAC_UNSAFE_ALLOW_UNSIGNED_CONTROL: '1' });
    assert.ok(!evaluatePolicy(overridden).refusals.some((f) => f.id === 'CEL-022'));
  });

  it('celeriac audit reports the same finding from Celeriac settings and from the environment', async () => {
    const settings = { brokerUrl: BASE.brokerUrl, securitySigningKeys: 'set', workerControlAllow: ['ping', 'shutdown'], workerControlAllowUnsigned: ['shutdown'] };
    const a = await runAudit({ celeriacSettings: settings });
    const f = a.findings.find((x) => x.id === 'CEL-022' && x.fromPolicy);
    assert.ok(f, JSON.stringify(a.findings.map((x) => [x.id, x.setting])));
    assert.equal(f.setting, 'workerControlAllowUnsigned');
    assert.equal(f.severity, 'high');
    const e = await runAudit({ env: { CELERIAC_BROKER_URL: BASE.brokerUrl!, CELERIAC_SIGNING_KEYS: 'set', CELERIAC_WORKER_CONTROL_ALLOW: 'shutdown', CELERIAC_WORKER_CONTROL_ALLOW_UNSIGNED: 'shutdown' } });
    assert.ok(e.findings.some((x) => x.id === 'CEL-022' && x.fromPolicy), JSON.stringify(e.findings.map((x) => [x.id, x.setting])));
    const clean = await runAudit({ celeriacSettings: { brokerUrl: BASE.brokerUrl, securitySigningKeys: 'set', workerControlAllow: ['@all'] } });
    assert.ok(!clean.findings.some((x) => x.id === 'CEL-022' && x.fromPolicy), 'destructive commands signed-only: no finding');
  });
});
