/**
 * The audit and the start-up policy never disagree: every kind of refusal
 * the policy can produce (each rule, for broker and backend, each
 * override) shows up as an audit finding with the same id and setting —
 * for Celeriac settings and for the same settings written as a Python
 * celeryconfig.py. The cases must cover every `unsafe…` override, so a new
 * refusal kind in the policy fails this test until a case is added.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { runAudit } from '../../../src/audit/index.ts';
import { severityRank } from '../../../src/audit/types.ts';
import { sqliteFileChecks } from '../../../src/transport/sqlite/file-safety.ts';
import { evaluatePolicy, InsecureConfigError, UNSAFE_OPTIONS, type PolicyInput } from '../../../src/config/policy.ts';
import { enforcePolicy } from '../../../src/observability/policy-events.ts';
import { controlPolicyInput } from '../../../src/config/control-settings.ts';

const STRONG = 'tR4vQ9zLm2Xw8KpNa7Yc';
const SECURE = {
  brokerUrl: `rediss://worker:${STRONG}@redis.internal:6379/0`,
  resultBackend: `rediss://worker:${STRONG}@redis.internal:6379/1`,
  taskSerializer: 'json', resultSerializer: 'json', acceptContent: ['json'], resultAcceptContent: ['json', 'msgpack'],
};

/** One insecure change per case, each producing at least one refusal. */
const CASES: Record<string, Record<string, unknown>> = {
  'plaintext broker': { brokerUrl: `redis://worker:${STRONG}@redis.internal:6379/0` },
  'plaintext AMQP broker': { brokerUrl: `amqp://worker:${STRONG}@rabbit.internal:5672/app` },
  'CERT_NONE in the broker URL': { brokerUrl: `rediss://worker:${STRONG}@redis.internal:6379/0?ssl_cert_reqs=CERT_NONE` },
  'CERT_NONE in brokerUseSsl': { brokerUrl: `amqps://worker:${STRONG}@rabbit.internal:5671/app`, brokerUseSsl: { ssl_cert_reqs: 'CERT_NONE' } },
  'host name check off': { brokerUrl: `amqps://worker:${STRONG}@rabbit.internal:5671/app`, brokerUseSsl: { ssl_check_hostname: false } },
  'TLS 1.0': { brokerUrl: `amqps://worker:${STRONG}@rabbit.internal:5671/app`, brokerUseSsl: { minVersion: 'TLSv1' } },
  'broker without credentials': { brokerUrl: 'rediss://redis.internal:6379/0' },
  'AMQP broker without credentials': { brokerUrl: 'amqps://rabbit.internal:5671/app' },
  'guest/guest': { brokerUrl: 'amqps://guest:guest@rabbit.internal:5671/app' },
  'weak broker password': { brokerUrl: 'rediss://worker:Summer2024@redis.internal:6379/0' },
  'plaintext backend': { resultBackend: `redis://worker:${STRONG}@redis.internal:6379/1` },
  'backend without credentials': { resultBackend: 'rediss://redis.internal:6379/1' },
  'CERT_NONE in redisBackendUseSsl': { resultBackend: `redis://worker:${STRONG}@redis.internal:6379/1`, redisBackendUseSsl: { ssl_cert_reqs: 'CERT_NONE' } },
  'PostgreSQL backend with sslmode=require': { resultBackend: `postgresql://worker:${STRONG}@db.internal/results?sslmode=require` },
  'weak backend password': { resultBackend: 'rediss://worker:password1@redis.internal:6379/1' },
  'pickle accepted': { acceptContent: ['json', 'pickle'] },
  'yaml result content': { resultAcceptContent: ['json', 'application/x-yaml'] },
  'pickle task serializer': { taskSerializer: 'pickle', acceptContent: ['json'] },
  'pickle result serializer': { resultSerializer: 'pickle' },
  'destructive control unsigned': { workerControlAllow: ['ping', 'shutdown'], workerControlAllowUnsigned: ['ping', 'shutdown'] },
};

/** Celeriac-only settings (no Python spelling): judged for Celeriac settings only; Python workers' remote control is CEL-022 of the Python audit. */
const CELERIAC_ONLY = new Set(['destructive control unsigned']);

const PY_NAMES: Record<string, string> = {
  brokerUrl: 'broker_url', resultBackend: 'result_backend', brokerUseSsl: 'broker_use_ssl', redisBackendUseSsl: 'redis_backend_use_ssl',
  taskSerializer: 'task_serializer', resultSerializer: 'result_serializer', acceptContent: 'accept_content', resultAcceptContent: 'result_accept_content',
};

function pyLiteral(v: unknown): string {
  if (v === true) return 'True';
  if (v === false) return 'False';
  if (Array.isArray(v)) return `[${v.map(pyLiteral).join(', ')}]`;
  if (v && typeof v === 'object') return `{${Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}: ${pyLiteral(x)}`).join(', ')}}`;
  return JSON.stringify(v);
}

function pySetting(setting: string): string {
  const base = setting.split(/[.\s]/)[0]!;
  return PY_NAMES[base] ? setting.replace(base, PY_NAMES[base]) : setting;
}

describe('audit ↔ start-up policy parity', () => {
  it('every refusal of the start-up policy is an audit finding with the same id and setting (Celeriac settings and Python config)', async () => {
    const overridesSeen = new Set<string>();
    const idsSeen = new Set<string>();
    const dir = mkdtempSync(join(tmpdir(), 'celeriac-audit-parity-'));
    try {
      for (const [name, change] of Object.entries(CASES)) {
        const settings = { ...SECURE, ...change };
        const input = { mode: 'production', ...settings, unsafe: {}, control: controlPolicyInput(settings) } as PolicyInput;
        const policy = evaluatePolicy(input);
        assert.ok(policy.refusals.length > 0, `${name}: the case must be refused by the policy`);
        // The worker's start-up refuses exactly these.
        assert.throws(() => enforcePolicy(input), (err: unknown) => err instanceof InsecureConfigError && err.findings.length === policy.refusals.length);

        const celeriac = await runAudit({ celeriacSettings: settings });
        const caseDir = join(dir, name.replace(/\W+/g, '-'));
        const { mkdirSync } = await import('node:fs');
        mkdirSync(caseDir);
        if (CELERIAC_ONLY.has(name)) {
          for (const r of policy.refusals) {
            if (r.override) overridesSeen.add(r.override);
            idsSeen.add(r.id);
            const c = celeriac.findings.find((f) => f.id === r.id && f.setting === r.setting && f.fromPolicy);
            assert.ok(c, `${name}: no Celeriac audit finding for ${r.id} ${r.setting}: ${JSON.stringify(celeriac.findings.map((f) => [f.id, f.setting]))}`);
            assert.ok(severityRank(c.severity) >= severityRank('medium'), `${name}: a refusal is at least medium`);
          }
          continue;
        }
        writeFileSync(join(caseDir, 'celeryconfig.py'), Object.entries(settings).map(([k, v]) => `${PY_NAMES[k]} = ${pyLiteral(v)}`).join('\n'));
        const python = await runAudit({ paths: [caseDir] });

        for (const r of policy.refusals) {
          if (r.override) overridesSeen.add(r.override);
          idsSeen.add(r.id);
          const c = celeriac.findings.find((f) => f.id === r.id && f.setting === r.setting && f.fromPolicy);
          assert.ok(c, `${name}: no Celeriac audit finding for ${r.id} ${r.setting}: ${JSON.stringify(celeriac.findings.map((f) => [f.id, f.setting]))}`);
          assert.ok(severityRank(c.severity) >= severityRank('medium'), `${name}: a refusal is at least medium`);
          const p = python.findings.find((f) => f.id === r.id && f.setting === pySetting(r.setting) && f.fromPolicy);
          assert.ok(p, `${name}: no Python audit finding for ${r.id} ${pySetting(r.setting)}: ${JSON.stringify(python.findings.map((f) => [f.id, f.setting]))}`);
          assert.ok(p.location.file?.endsWith('celeryconfig.py') && p.location.line, `${name}: the Python finding points at its line`);
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    assert.deepEqual([...overridesSeen].sort(), [...UNSAFE_OPTIONS].sort(), 'a refusal kind of the policy has no case here');
    for (const id of ['CEL-001', 'CEL-003', 'CEL-005', 'CEL-011', 'CEL-014', 'CEL-015', 'CEL-022']) assert.ok(idsSeen.has(id), `${id} not covered`);
  });

  it('SQLite file checks the policy receives (world-readable database) are audit findings too', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'celeriac-audit-sqlite-'));
    try {
      const db = join(dir, 'broker.db');
      writeFileSync(db, '', { mode: 0o644 });
      chmodSync(db, 0o644);
      const settings = { ...SECURE, brokerUrl: `sqlite://${db}` };
      const policy = evaluatePolicy({ mode: 'production', ...settings, fileChecks: sqliteFileChecks(db, 'broker') } as PolicyInput);
      assert.ok(policy.refusals.length > 0, 'the policy refuses a world-readable database');
      const audit = await runAudit({ celeriacSettings: settings });
      for (const r of policy.refusals) assert.ok(audit.findings.some((f) => f.id === r.id && f.setting === r.setting && f.fromPolicy), `${r.id} ${r.setting}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a secure configuration gets no policy finding from the audit, and an override shows as an accepted risk', async () => {
    const clean = await runAudit({ celeriacSettings: SECURE });
    assert.deepEqual(clean.findings.filter((f) => f.fromPolicy), []);
    const accepted = await runAudit({ celeriacSettings: { ...SECURE, brokerUrl: `redis://worker:${STRONG}@redis.internal:6379/0`, unsafeAllowPlaintext: true } });
    const f = accepted.findings.find((x) => x.id === 'CEL-003' && x.fromPolicy);
    assert.ok(f, 'an accepted risk is still reported');
    assert.match(f.message, /accepted by unsafeAllowPlaintext/);
    assert.equal(f.severity, 'high');
  });
});

describe('audit with an unreadable setting', () => {
  it('reports the unreadable setting and still judges the others', async () => {
    const r = await runAudit({ celeriacSettings: { ...SECURE, brokerUrl: 'nats://broker.internal:4222', acceptContent: ['pickle'] } });
    assert.ok(r.findings.some((f) => f.id === 'CEL-001' && f.setting === 'brokerUrl' && /cannot be read/.test(f.message)), JSON.stringify(r.findings.map((f) => [f.id, f.setting, f.message])));
    assert.ok(r.findings.some((f) => f.id === 'CEL-005' && f.setting === 'acceptContent'), 'content still judged');
  });
});

describe('audit: security events kept in the log (CEL-021)', () => {
  it('a log level above warning hides the security events and is a finding; warning or below is not', async () => {
    for (const level of ['error', 'critical', 'silent']) {
      const r = await runAudit({ celeriacSettings: SECURE, env: { CELERIAC_LOG_LEVEL: level } });
      assert.ok(r.findings.some((f) => f.id === 'CEL-021' && f.setting === 'CELERIAC_LOG_LEVEL'), level);
    }
    for (const level of ['warning', 'info', undefined]) {
      const r = await runAudit({ celeriacSettings: SECURE, env: level ? { CELERIAC_LOG_LEVEL: level } : {} });
      assert.ok(!r.findings.some((f) => f.id === 'CEL-021'), String(level));
    }
  });
});
