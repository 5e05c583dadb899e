/**
 * Issue 20 #10: `NODE_ENV=Production`, `prod` or `production ` used to run
 * in development mode (only the exact string `production` was strict), so
 * loopback plaintext, default passwords and unsigned tasks were accepted.
 * Every value outside the known sets is now refused, and with neither
 * variable set the mode is production: development is only ever asked for
 * (`CELERIAC_ENV=development`, `NODE_ENV=development|test`). Through the
 * real entry points (createApp, the policy input).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createApp } from '../../../src/client/app.ts';
import { resolveSecurityMode } from '../../../src/config/mode.ts';
import { resolveSettings } from '../../../src/config/options.ts';
import { policyInputFromSettings, evaluatePolicy, InsecureConfigError } from '../../../src/config/policy.ts';
import { ConfigError } from '../../../src/errors.ts';
import { createLogger } from '../../../src/observability/logging.ts';

const logger = createLogger({ level: 'silent' });
const VARIANTS = ['Production', 'PRODUCTION', 'prod', 'production ', ' production', 'production\n', 'staging', 'live', 'dev', 'Development'];

describe('security mode (issue 20 #10)', () => {
  it('exact values only', () => {
    assert.deepEqual(resolveSecurityMode({ NODE_ENV: 'production' }), { mode: 'production', source: 'NODE_ENV' });
    assert.deepEqual(resolveSecurityMode({ NODE_ENV: 'development' }), { mode: 'development', source: 'NODE_ENV' });
    assert.deepEqual(resolveSecurityMode({ NODE_ENV: 'test' }), { mode: 'development', source: 'NODE_ENV' });
    assert.deepEqual(resolveSecurityMode({}), { mode: 'production', source: 'default' });
    assert.deepEqual(resolveSecurityMode({ NODE_ENV: '', CELERIAC_ENV: '' }), { mode: 'production', source: 'default' }, 'empty is unset');
    assert.deepEqual(resolveSecurityMode({ CELERIAC_ENV: 'development' }), { mode: 'development', source: 'CELERIAC_ENV' });
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

  it('production unless development is asked for; relaxed findings name who asked', () => {
    const settings = resolveSettings({ brokerUrl: 'redis://127.0.0.1:6379/0' });
    const ids = (r: { id: string }[]): string[] => r.map((f) => f.id).sort();
    for (const env of [{}, { NODE_ENV: '' }, { CELERIAC_ENV: 'production' }, { NODE_ENV: 'production' }, { CELERIAC_ENV: 'production', NODE_ENV: 'test' }]) {
      const r = evaluatePolicy(policyInputFromSettings(settings, env));
      assert.deepEqual(ids(r.refusals), ['CEL-001', 'CEL-003'], JSON.stringify(env));
      assert.equal(r.warnings.length, 0, JSON.stringify(env));
    }
    for (const [env, who] of [[{ CELERIAC_ENV: 'development' }, 'CELERIAC_ENV'], [{ NODE_ENV: 'development' }, 'NODE_ENV'], [{ NODE_ENV: 'test' }, 'NODE_ENV']] as const) {
      const dev = evaluatePolicy(policyInputFromSettings(settings, env));
      assert.equal(dev.refusals.length, 0, JSON.stringify(env));
      assert.deepEqual(ids(dev.warnings), ['CEL-001', 'CEL-003'], JSON.stringify(env));
      assert.ok(dev.warnings.every((w) => w.message.includes(`because ${who} asks for development mode; refused in production`)), JSON.stringify(dev.warnings));
    }
  });

  it('an app with no mode variable refuses loopback Redis without a password and unsigned tasks; CELERIAC_ENV=development starts it with warnings', async () => {
    const url = 'redis://127.0.0.1:6379/0';
    const strict = createApp({ brokerUrl: url, env: {}, logger });
    assert.equal(strict.production, true);
    await assert.rejects(strict.broker(), (e: unknown) => {
      assert.ok(e instanceof InsecureConfigError);
      assert.deepEqual(e.findings.map((f) => f.id).sort(), ['CEL-001', 'CEL-003', 'CEL-007']);
      return true;
    });
    await strict.close();
    const lines: string[] = [];
    const devLogger = createLogger({ level: 'warn', destination: { write: (line: string) => void lines.push(line) } as never });
    const dev = createApp({ brokerUrl: url, env: { CELERIAC_ENV: 'development' }, logger: devLogger });
    assert.equal(dev.production, false);
    dev.enforceSecurityPolicy(); // the check broker() runs before connecting; no server needed here
    const warned = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.securityEvent === 'policy_warning');
    assert.deepEqual(warned.map((w) => w.id).sort(), ['CEL-001', 'CEL-003']);
    await dev.close();
  });
});
