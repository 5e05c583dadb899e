/**
 * Issue 20 #10: `NODE_ENV=Production`, `prod` or `production ` used to run
 * in development mode (only the exact string `production` was strict), so
 * loopback plaintext, default passwords and unsigned tasks were accepted.
 * Every value outside the known sets is now refused, through the real
 * entry points (createApp, the policy input).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createApp } from '../../../src/client/app.ts';
import { resolveSecurityMode } from '../../../src/config/mode.ts';
import { resolveSettings } from '../../../src/config/options.ts';
import { policyInputFromSettings, evaluatePolicy } from '../../../src/config/policy.ts';
import { ConfigError } from '../../../src/errors.ts';
import { createLogger } from '../../../src/observability/logging.ts';

const logger = createLogger({ level: 'silent' });
const VARIANTS = ['Production', 'PRODUCTION', 'prod', 'production ', ' production', 'production\n', 'staging', 'live', 'dev', 'Development'];

describe('security mode (issue 20 #10)', () => {
  it('exact values only', () => {
    assert.deepEqual(resolveSecurityMode({ NODE_ENV: 'production' }), { mode: 'production', source: 'NODE_ENV' });
    assert.deepEqual(resolveSecurityMode({ NODE_ENV: 'development' }), { mode: 'development', source: 'NODE_ENV' });
    assert.deepEqual(resolveSecurityMode({ NODE_ENV: 'test' }), { mode: 'development', source: 'NODE_ENV' });
    assert.deepEqual(resolveSecurityMode({}), { mode: 'development', source: 'default' });
    assert.deepEqual(resolveSecurityMode({ CELERIAC_ENV: 'production', NODE_ENV: 'development' }), { mode: 'production', source: 'CELERIAC_ENV' });
    assert.deepEqual(resolveSecurityMode({ CELERIAC_ENV: 'development', NODE_ENV: 'production' }), { mode: 'development', source: 'CELERIAC_ENV' });
    for (const v of VARIANTS) {
      assert.throws(() => resolveSecurityMode({ NODE_ENV: v }), (e: unknown) => e instanceof ConfigError && e.code === 'ERR_MODE', JSON.stringify(v));
      assert.throws(() => resolveSecurityMode({ CELERIAC_ENV: v }), ConfigError, JSON.stringify(v));
    }
    assert.throws(() => resolveSecurityMode({ CELERIAC_ENV: 'test' }), ConfigError, 'CELERIAC_ENV has two values');
    assert.throws(() => resolveSecurityMode({ NODE_ENV: 'constructor' }), ConfigError, 'no prototype lookups');
  });

  it('a misspelt production never starts an app in development mode', () => {
    for (const v of VARIANTS) {
      assert.throws(
        () => createApp({ brokerUrl: 'redis://guest:guest@127.0.0.1:6379/0', env: { NODE_ENV: v }, logger }),
        (e: unknown) => e instanceof ConfigError && /refusing to guess the security mode/.test(e.message),
        JSON.stringify(v),
      );
      assert.throws(() => policyInputFromSettings(resolveSettings({ brokerUrl: 'redis://127.0.0.1:6379/0' }), { NODE_ENV: v }), ConfigError);
    }
  });

  it('CELERIAC_ENV=production is strict; relaxed findings name what decided the mode', () => {
    const settings = resolveSettings({ brokerUrl: 'redis://127.0.0.1:6379/0' });
    assert.ok(evaluatePolicy(policyInputFromSettings(settings, { CELERIAC_ENV: 'production' })).refusals.length > 0);
    const dev = evaluatePolicy(policyInputFromSettings(settings, {}));
    assert.equal(dev.refusals.length, 0);
    assert.ok(dev.warnings.length > 0 && dev.warnings.every((w) => /neither CELERIAC_ENV nor NODE_ENV is set/.test(w.message)));
  });
});
