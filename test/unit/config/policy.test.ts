import assert from 'node:assert/strict';
import { beforeEach, describe, it } from 'node:test';
import { resolveSettings } from '../../../src/config/options.ts';
import {
  checkPolicy, evaluatePolicy, InsecureConfigError, policyInputFromSettings, UNSAFE_OPTIONS, unsafeEnvName,
  type Finding, type PolicyInput, type PolicyReport, type UnsafeOption,
} from '../../../src/config/policy.ts';
import { ConfigError } from '../../../src/errors.ts';
import { resetSecurityEvents, securityCounters } from '../../../src/observability/security-events.ts';

const STRONG = 'tR4vQ9zLm2Xw8KpNa7Yc';
const SECURE_BROKER = `rediss://worker:${STRONG}@redis.internal:6379/0`;
const SECURE_BACKEND = `rediss://worker:${STRONG}@redis.internal:6379/1`;

function prod(extra: Partial<PolicyInput> = {}): PolicyInput {
  return { mode: 'production', brokerUrl: SECURE_BROKER, resultBackend: SECURE_BACKEND, acceptContent: ['json'], resultAcceptContent: ['json', 'msgpack'], taskSerializer: 'json', resultSerializer: 'json', ...extra };
}
function dev(extra: Partial<PolicyInput> = {}): PolicyInput {
  return { ...prod(extra), mode: 'development', ...extra };
}

/** Exactly one refusal with this id and setting; returns it. */
function oneRefusal(r: PolicyReport, id: string, setting: string): Finding {
  assert.equal(r.refusals.length, 1, `expected one refusal, got ${JSON.stringify(r.refusals, null, 1)}`);
  const f = r.refusals[0]!;
  assert.equal(f.id, id);
  assert.equal(f.setting, setting);
  assert.ok(f.fix.length > 10);
  return f;
}

/** The same input with the override set: no refusal, a warning naming the override. */
function assertOverride(input: PolicyInput, override: UnsafeOption): void {
  const r = evaluatePolicy({ ...input, unsafe: { [override]: true } });
  assert.deepEqual(r.refusals, [], `${override} should accept it`);
  const w = r.warnings.find((x) => x.override === override);
  assert.ok(w, `expected a warning for ${override}: ${JSON.stringify(r.warnings)}`);
  assert.match(w.message, new RegExp(`accepted by ${override}`));
  assert.ok(!r.warnings.some((x) => x.setting === override), 'a used override is not reported as unused');
}

function assertNoSecret(r: PolicyReport, secret: string): void {
  const text = JSON.stringify(r);
  assert.ok(!text.includes(secret), `report leaks ${secret}: ${text}`);
}

describe('policy: a secure configuration', () => {
  it('has no findings in production', () => {
    assert.deepEqual(evaluatePolicy(prod()), { refusals: [], warnings: [] });
  });

  it('amqps and postgres verify-full pass too', () => {
    assert.deepEqual(evaluatePolicy(prod({
      brokerUrl: `amqps://worker:${STRONG}@rabbit.internal:5671/celeriac`,
      resultBackend: `postgres://app:${STRONG}@db.internal/results?sslmode=verify-full`,
    })), { refusals: [], warnings: [] });
  });

  it('sqlite and memory need neither TLS nor credentials', () => {
    assert.deepEqual(evaluatePolicy(prod({ brokerUrl: 'sqlite:///var/lib/celeriac/q.db', resultBackend: 'memory://' })), { refusals: [], warnings: [] });
  });

  it('no URLs at all (app defaults) is not a finding', () => {
    assert.deepEqual(evaluatePolicy({ mode: 'production' }), { refusals: [], warnings: [] });
  });
});

describe('policy: plaintext to a network host (CEL-003 / CEL-015)', () => {
  it('redis:// broker is refused, in production and development', () => {
    for (const input of [prod({ brokerUrl: `redis://worker:${STRONG}@redis.internal:6379/0` }), dev({ brokerUrl: `redis://worker:${STRONG}@redis.internal:6379/0` })]) {
      const r = evaluatePolicy(input);
      const f = oneRefusal(r, 'CEL-003', 'brokerUrl');
      assert.match(f.message, /without TLS/);
      assert.match(f.fix, /rediss:\/\//);
      assert.match(f.fix, /unsafeAllowPlaintext/);
      assertNoSecret(r, STRONG);
    }
  });

  it('amqp:// broker is refused', () => {
    const f = oneRefusal(evaluatePolicy(prod({ brokerUrl: `amqp://worker:${STRONG}@rabbit.internal:5672//` })), 'CEL-003', 'brokerUrl');
    assert.match(f.fix, /amqps:\/\//);
  });

  it('redis:// result backend is refused as CEL-015', () => {
    oneRefusal(evaluatePolicy(prod({ resultBackend: `redis://worker:${STRONG}@redis.internal:6379/1` })), 'CEL-015', 'resultBackend');
  });

  it('postgres without sslmode, or with prefer, is refused', () => {
    for (const q of ['', '?sslmode=prefer', '?sslmode=disable']) {
      const f = oneRefusal(evaluatePolicy(prod({ resultBackend: `postgres://app:${STRONG}@db.internal/results${q}` })), 'CEL-015', 'resultBackend');
      assert.match(f.fix, /sslmode=verify-full/);
    }
  });

  it('brokerUseSsl switches TLS on for redis://', () => {
    assert.deepEqual(evaluatePolicy(prod({ brokerUrl: `redis://worker:${STRONG}@redis.internal:6379/0`, brokerUseSsl: { ssl_cert_reqs: 'required' } })).refusals, []);
  });

  it('override: unsafeAllowPlaintext', () => {
    assertOverride(prod({ brokerUrl: `redis://worker:${STRONG}@redis.internal:6379/0` }), 'unsafeAllowPlaintext');
  });
});

describe('policy: TLS without verification (CEL-003 / CEL-015)', () => {
  it('ssl_cert_reqs=CERT_NONE in the URL', () => {
    const f = oneRefusal(evaluatePolicy(prod({ brokerUrl: `${SECURE_BROKER}?ssl_cert_reqs=CERT_NONE` })), 'CEL-003', 'brokerUrl.ssl_cert_reqs');
    assert.match(f.message, /verification is off/);
    assert.match(f.fix, /unsafeAllowInsecureTls/);
  });

  it('brokerUseSsl.ssl_cert_reqs = none and rejectUnauthorized: false', () => {
    oneRefusal(evaluatePolicy(prod({ brokerUseSsl: { ssl_cert_reqs: 'none' } })), 'CEL-003', 'brokerUseSsl.ssl_cert_reqs');
    oneRefusal(evaluatePolicy(prod({ brokerUseSsl: { rejectUnauthorized: false } })), 'CEL-003', 'brokerUseSsl.rejectUnauthorized');
  });

  it('redisBackendUseSsl.ssl_cert_reqs = CERT_NONE is CEL-015', () => {
    oneRefusal(evaluatePolicy(prod({ redisBackendUseSsl: { ssl_cert_reqs: 'CERT_NONE' } })), 'CEL-015', 'redisBackendUseSsl.ssl_cert_reqs');
  });

  it('host name check off', () => {
    oneRefusal(evaluatePolicy(prod({ brokerUseSsl: { ssl_check_hostname: false } })), 'CEL-003', 'brokerUseSsl.ssl_check_hostname');
  });

  it('postgres sslmode=require and verify-ca', () => {
    for (const m of ['require', 'verify-ca']) {
      oneRefusal(evaluatePolicy(prod({ resultBackend: `postgres://app:${STRONG}@db.internal/r?sslmode=${m}` })), 'CEL-015', 'resultBackend sslmode');
    }
  });

  it('override: unsafeAllowInsecureTls', () => {
    assertOverride(prod({ brokerUseSsl: { ssl_cert_reqs: 'none' } }), 'unsafeAllowInsecureTls');
  });
});

describe('policy: credentials (CEL-001 / CEL-014 / CEL-011)', () => {
  it('network broker without credentials', () => {
    const f = oneRefusal(evaluatePolicy(prod({ brokerUrl: 'rediss://redis.internal:6379/0' })), 'CEL-001', 'brokerUrl');
    assert.match(f.message, /no credentials/);
    assert.match(f.fix, /\$\{file:/);
    assert.match(f.fix, /unsafeAllowNoCredentials/);
  });

  it('AMQP without credentials mentions guest/guest', () => {
    const f = oneRefusal(evaluatePolicy(prod({ brokerUrl: 'amqps://rabbit.internal/celeriac' })), 'CEL-001', 'brokerUrl');
    assert.match(f.message, /guest\/guest/);
  });

  it('network backend without credentials is CEL-014', () => {
    oneRefusal(evaluatePolicy(prod({ resultBackend: 'rediss://redis.internal:6379/1' })), 'CEL-014', 'resultBackend');
  });

  it('known default credentials', () => {
    const r = evaluatePolicy(prod({ brokerUrl: 'amqps://guest:guest@rabbit.internal:5671/celeriac' }));
    const f = oneRefusal(r, 'CEL-011', 'brokerUrl');
    assert.match(f.fix, /unsafeAllowDefaultCredentials/);
    oneRefusal(evaluatePolicy(prod({ brokerUrl: 'rediss://:redis@redis.internal/0' })), 'CEL-011', 'brokerUrl');
    oneRefusal(evaluatePolicy(prod({ brokerUrl: 'rediss://celery:celery@redis.internal/0' })), 'CEL-011', 'brokerUrl');
  });

  it('weak password', () => {
    const r = evaluatePolicy(prod({ brokerUrl: 'rediss://worker:Short-9x@redis.internal/0' }));
    const f = oneRefusal(r, 'CEL-011', 'brokerUrl');
    assert.match(f.message, /too short/);
    assert.match(f.fix, /unsafeAllowWeakCredentials/);
    assertNoSecret(r, 'Short-9x');
  });

  it('overrides: unsafeAllowNoCredentials, unsafeAllowDefaultCredentials, unsafeAllowWeakCredentials', () => {
    assertOverride(prod({ brokerUrl: 'rediss://redis.internal:6379/0' }), 'unsafeAllowNoCredentials');
    assertOverride(prod({ brokerUrl: 'amqps://guest:guest@rabbit.internal:5671/x' }), 'unsafeAllowDefaultCredentials');
    assertOverride(prod({ brokerUrl: 'rediss://worker:Short-9x@redis.internal/0' }), 'unsafeAllowWeakCredentials');
  });

  it('an override covers only its own rule', () => {
    const r = evaluatePolicy(prod({ brokerUrl: 'redis://redis.internal:6379/0', unsafe: { unsafeAllowPlaintext: true } }));
    oneRefusal(r, 'CEL-001', 'brokerUrl');
    const d = evaluatePolicy(prod({ brokerUrl: 'rediss://worker:Short-9x@redis.internal/0', unsafe: { unsafeAllowDefaultCredentials: true } }));
    assert.equal(d.refusals.length, 1);
  });

  it('PostgreSQL over a Unix socket needs no password', () => {
    assert.deepEqual(evaluatePolicy(prod({ resultBackend: 'postgres:///results?host=/run/postgresql' })).refusals, []);
  });
});

describe('policy: content (CEL-005)', () => {
  for (const bad of ['pickle', 'yaml', 'application/x-python-serialize', 'application/x-yaml']) {
    it(`acceptContent with ${bad} is refused as code-executing`, () => {
      const f = oneRefusal(evaluatePolicy(prod({ acceptContent: ['json', bad] })), 'CEL-005', 'acceptContent');
      assert.match(f.message, /execute code/);
      assert.match(f.fix, /unsafeAllowContent/);
    });
  }

  it('resultAcceptContent with pickle is refused', () => {
    oneRefusal(evaluatePolicy(prod({ resultAcceptContent: ['pickle'] })), 'CEL-005', 'resultAcceptContent');
  });

  it('unknown content types are refused too', () => {
    oneRefusal(evaluatePolicy(prod({ acceptContent: ['application/x-custom'] })), 'CEL-005', 'acceptContent');
  });

  it('names and MIME types of json, msgpack, auth are accepted', () => {
    assert.deepEqual(evaluatePolicy(prod({
      acceptContent: ['json', 'msgpack', 'auth', 'application/json', 'application/x-msgpack', 'application/data', 'Application/JSON'],
      resultAcceptContent: ['application/msgpack'],
    })), { refusals: [], warnings: [] });
  });

  it('taskSerializer and resultSerializer', () => {
    oneRefusal(evaluatePolicy(prod({ taskSerializer: 'pickle' })), 'CEL-005', 'taskSerializer');
    oneRefusal(evaluatePolicy(prod({ resultSerializer: 'yaml' })), 'CEL-005', 'resultSerializer');
  });

  it('override: unsafeAllowContent', () => {
    assertOverride(prod({ acceptContent: ['json', 'pickle'] }), 'unsafeAllowContent');
  });

  it('auth serializer with unsigned json still accepted warns (CEL-007)', () => {
    const r = evaluatePolicy(prod({ taskSerializer: 'auth', acceptContent: ['auth', 'json'] }));
    assert.deepEqual(r.refusals, []);
    assert.equal(r.warnings[0]?.id, 'CEL-007');
    assert.deepEqual(evaluatePolicy(prod({ taskSerializer: 'auth', acceptContent: ['auth'] })).warnings, []);
  });
});

describe('policy: loopback, production vs development', () => {
  const local = { brokerUrl: 'redis://localhost:6379/0', resultBackend: 'redis://127.0.0.1:6379/1' };

  it('development: loopback plaintext without credentials is allowed with warnings', () => {
    const r = evaluatePolicy(dev(local));
    assert.deepEqual(r.refusals, []);
    const ids = r.warnings.map((w) => `${w.id} ${w.setting}`).sort();
    assert.deepEqual(ids, ['CEL-001 brokerUrl', 'CEL-003 brokerUrl', 'CEL-014 resultBackend', 'CEL-015 resultBackend']);
    assert.ok(r.warnings.every((w) => /refused in production, the mode unless CELERIAC_ENV=development or NODE_ENV=development\|test/.test(w.message)));
  });

  it('production: the same is refused', () => {
    const r = evaluatePolicy(prod(local));
    assert.deepEqual(r.refusals.map((f) => `${f.id} ${f.setting}`).sort(), ['CEL-001 brokerUrl', 'CEL-003 brokerUrl', 'CEL-014 resultBackend', 'CEL-015 resultBackend']);
  });

  it('development: guest/guest on localhost is a warning; production refuses', () => {
    const input = { brokerUrl: 'amqp://guest:guest@localhost:5672//', resultBackend: undefined };
    const d = evaluatePolicy(dev(input));
    assert.deepEqual(d.refusals, []);
    assert.ok(d.warnings.some((w) => w.id === 'CEL-011'));
    assert.ok(evaluatePolicy(prod(input)).refusals.some((f) => f.id === 'CEL-011'));
  });

  it('development: ::1 and 127.x are loopback, a LAN address is not', () => {
    assert.deepEqual(evaluatePolicy(dev({ brokerUrl: 'redis://[::1]:6379/0', resultBackend: undefined })).refusals, []);
    assert.deepEqual(evaluatePolicy(dev({ brokerUrl: 'redis://127.3.2.1:6379/0', resultBackend: undefined })).refusals, []);
    assert.equal(evaluatePolicy(dev({ brokerUrl: 'redis://192.168.1.10:6379/0', resultBackend: undefined })).refusals.length, 2);
  });

  it('production: overrides make loopback plaintext a warning', () => {
    const r = evaluatePolicy(prod({ ...local, unsafe: { unsafeAllowPlaintext: true, unsafeAllowNoCredentials: true } }));
    assert.deepEqual(r.refusals, []);
    assert.equal(r.warnings.length, 4);
  });

  it('development: an override needed only in production is not reported as unused', () => {
    const r = evaluatePolicy(dev({ ...local, unsafe: { unsafeAllowPlaintext: true } }));
    assert.ok(!r.warnings.some((w) => w.setting === 'unsafeAllowPlaintext'));
  });
});

describe('policy: unused overrides and file checks', () => {
  it('an override nothing needs is a warning', () => {
    const r = evaluatePolicy(prod({ unsafe: { unsafeAllowContent: true } }));
    assert.deepEqual(r.refusals, []);
    assert.equal(r.warnings.length, 1);
    assert.equal(r.warnings[0]!.setting, 'unsafeAllowContent');
    assert.match(r.warnings[0]!.fix, /remove unsafeAllowContent/);
  });

  it('fileChecks results are merged', () => {
    const refusal: Finding = { id: 'CEL-002', setting: 'brokerUrl', message: 'sqlite file is world-readable', fix: 'chmod 600' };
    const r = evaluatePolicy(prod({ brokerUrl: 'sqlite:///q.db', fileChecks: { refusals: [refusal], warnings: [] } }));
    assert.deepEqual(r.refusals, [refusal]);
  });

  it('the override list is the documented one', () => {
    assert.deepEqual([...UNSAFE_OPTIONS], ['unsafeAllowPlaintext', 'unsafeAllowInsecureTls', 'unsafeAllowNoCredentials', 'unsafeAllowDefaultCredentials', 'unsafeAllowWeakCredentials', 'unsafeAllowContent', 'unsafeAllowUnsignedControl']);
    assert.equal(unsafeEnvName('unsafeAllowInsecureTls'), 'CELERIAC_UNSAFE_ALLOW_INSECURE_TLS');
  });
});

describe('checkPolicy (pure)', () => {
  beforeEach(() => resetSecurityEvents());

  it('throws one error listing every refusal, and neither logs nor counts (callers do)', () => {
    const input = prod({ brokerUrl: 'redis://worker:Weak-pw-7@redis.internal:6379/0', acceptContent: ['json', 'pickle'] });
    assert.throws(() => checkPolicy(input), (err: unknown) => err instanceof InsecureConfigError && err.findings.length === 3);
    assert.deepEqual(securityCounters(), {});
  });

  it('returns warnings without recording them', () => {
    const report = checkPolicy(dev({ brokerUrl: 'redis://:Weak-pw-7@localhost:6379/0', resultBackend: undefined }));
    assert.equal(report.warnings.length, 2);
    assert.deepEqual(securityCounters(), {});
  });
});

describe('policyInputFromSettings', () => {
  it('maps app settings (snake_case too) and the mode', () => {
    const settings = resolveSettings({
      broker_url: SECURE_BROKER,
      result_backend: SECURE_BACKEND,
      broker_use_ssl: { ssl_cert_reqs: 'required' },
      redis_backend_use_ssl: { ssl_cert_reqs: 'required' },
      unsafe_allow_plaintext: true,
      accept_content: ['json'],
    });
    const input = policyInputFromSettings(settings, { NODE_ENV: 'production' });
    assert.equal(input.mode, 'production');
    assert.equal(input.brokerUrl, SECURE_BROKER);
    assert.equal(input.resultBackend, SECURE_BACKEND);
    assert.deepEqual(input.brokerUseSsl, { ssl_cert_reqs: 'required' });
    assert.deepEqual(input.redisBackendUseSsl, { ssl_cert_reqs: 'required' });
    assert.deepEqual(input.unsafe, { unsafeAllowPlaintext: true });
    assert.deepEqual(input.acceptContent, ['json']);
    assert.equal(input.taskSerializer, 'json');
  });

  it('production unless development is asked for; URLs and overrides from the environment', () => {
    const input = policyInputFromSettings(resolveSettings({}), { CELERIAC_BROKER_URL: 'redis://localhost/0', CELERIAC_UNSAFE_ALLOW_CONTENT: '1' });
    assert.equal(input.mode, 'production');
    assert.equal(input.modeSource, 'default');
    assert.equal(policyInputFromSettings(resolveSettings({}), { NODE_ENV: 'test' }).mode, 'development');
    assert.equal(input.brokerUrl, 'redis://localhost/0');
    assert.deepEqual(input.unsafe, { unsafeAllowContent: true });
  });

  it('an unsafe option must be a boolean', () => {
    assert.throws(() => policyInputFromSettings(resolveSettings({ unsafeAllowPlaintext: 'maybe' as unknown as boolean }), {}), ConfigError);
  });
});
