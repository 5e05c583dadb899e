/**
 * Audit output: SARIF 2.1.0 valid against the schema (the copy shipped in
 * an npm package; no network at test time) with rule metadata and
 * file/line locations; text grouped by severity; JSON; baselines; the
 * `--fail-on` exit code; through the CLI as well.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runAudit, type AuditReport } from '../../../src/audit/index.ts';
import { applyBaseline, formatJson, formatSarif, formatText, makeBaseline, shouldFail } from '../../../src/audit/report.ts';
import { CHECKS } from '../../../src/audit/types.ts';
import { runAuditCommand } from '../../../src/cli/audit.ts';
import { captureIo as io } from './capture-io.ts';
import { fakePrivateKeyPem } from '../../helpers/pki.ts';

const require = createRequire(import.meta.url);
const SCHEMA_PATH = require.resolve('@microsoft/jest-sarif/lib/schemas/sarif-2.1.0-rtm.5.json');

type Validate = ((data: unknown) => boolean) & { errors?: unknown };
interface AjvLike {
  compile(schema: object): Validate;
}

/** Ajv for JSON Schema draft-04 (the schema's dialect), with format checks (uri, date-time). */
function validator(): Validate {
  const { default: Ajv } = require('ajv-draft-04') as { default: new (opts: object) => AjvLike };
  const { default: addFormats } = require('ajv-formats') as { default: (ajv: AjvLike) => void };
  // unicodeRegExp off: one pattern in the published schema ("language") is not valid with the u flag.
  const ajv = new Ajv({ allErrors: true, strict: false, unicodeRegExp: false });
  addFormats(ajv);
  return ajv.compile(JSON.parse(readFileSync(SCHEMA_PATH, 'utf8')) as object);
}

const INSECURE_CONFIG = [
  "broker_url = 'amqp://guest:guest@127.0.0.1:5672//'",
  "result_backend = 'redis://127.0.0.1:6379/0'",
  "accept_content = ['json', 'pickle']",
  "task_serializer = 'pickle'",
].join('\n');

describe('audit reports', () => {
  let dir: string;
  let report: AuditReport;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'celeriac-audit-report-'));
    writeFileSync(join(dir, 'celeryconfig.py'), INSECURE_CONFIG);
    writeFileSync(join(dir, 'key.pem'), fakePrivateKeyPem());
    chmodSync(join(dir, 'key.pem'), 0o644);
    report = await runAudit({ paths: [dir] });
    // One live-style finding (an endpoint, no file) to exercise that location form too.
    report.findings.push({ id: 'CEL-008', severity: 'high', setting: 'auth', message: 'http://127.0.0.1:5555/ answers without authentication', fix: 'add auth', kind: 'live', location: { endpoint: 'http://127.0.0.1:5555/' } });
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('SARIF 2.1.0 output validates against the schema, with every check as a rule and file/line locations', () => {
    const sarif = JSON.parse(formatSarif(report.findings, { baseDir: dir, version: '0.1.0' }));
    const validate = validator();
    assert.ok(validate(sarif), JSON.stringify(validate.errors, null, 1));
    const run = sarif.runs[0];
    assert.equal(sarif.version, '2.1.0');
    assert.deepEqual(run.tool.driver.rules.map((r: { id: string }) => r.id), CHECKS.map((c) => c.id));
    for (const r of run.tool.driver.rules) assert.ok(r.shortDescription.text && r.properties['security-severity'] && r.defaultConfiguration.level);
    const pickle = run.results.find((r: { ruleId: string; message: { text: string } }) => r.ruleId === 'CEL-005' && /pickle/.test(r.message.text));
    assert.equal(pickle.locations[0].physicalLocation.artifactLocation.uri, 'celeryconfig.py');
    assert.equal(pickle.locations[0].physicalLocation.artifactLocation.uriBaseId, 'SRCROOT');
    assert.equal(pickle.locations[0].physicalLocation.region.startLine, 3);
    assert.equal(pickle.level, 'error');
    for (const r of run.results) assert.equal(run.tool.driver.rules[r.ruleIndex].id, r.ruleId);
    // A broken document is caught by the same validator (the check can fail).
    const broken = structuredClone(sarif);
    broken.runs[0].results[0].level = 'fatal';
    assert.equal(validate(broken), false);
  });

  it('text groups by severity, most severe first, with locations and fixes; no colour unless asked', () => {
    const text = formatText(report, report.findings, { colour: false, baseDir: dir });
    assert.ok(text.indexOf('CRITICAL') < text.indexOf('HIGH') && text.indexOf('HIGH') < text.indexOf('MEDIUM'));
    assert.match(text, /\[CEL-005\] accept_content\n\s+at\s+celeryconfig\.py:3\n/);
    assert.match(text, /fix: /);
    assert.doesNotMatch(text, /\x1b\[/);
    assert.match(formatText(report, report.findings, { colour: true, baseDir: dir }), /\x1b\[1;35mCRITICAL/);
    assert.doesNotMatch(text, /guest:guest@/, 'passwords are redacted');
  });

  it('JSON carries every finding with its fingerprint and a summary', () => {
    const j = JSON.parse(formatJson(report, report.findings, { baseDir: dir, accepted: [] }));
    assert.equal(j.findings.length, report.findings.length);
    assert.equal(j.summary.critical, report.findings.filter((f) => f.severity === 'critical').length);
    assert.match(j.findings[0].fingerprint, /^[0-9a-f]{32}$/);
  });

  it('a baseline accepts known findings, by fingerprints that do not depend on where the files live', () => {
    const b = makeBaseline(report.findings.slice(0, 3), dir);
    const { active, accepted } = applyBaseline(report.findings, b, dir);
    assert.equal(accepted.length, 3);
    assert.equal(active.length, report.findings.length - 3);
    const moved = report.findings.map((f) => ({ ...f, location: { ...f.location, ...(f.location.file ? { file: f.location.file.replace(dir, '/elsewhere') } : {}) } }));
    assert.equal(applyBaseline(moved, b, '/elsewhere').accepted.length, 3);
  });

  it('--fail-on compares severities', () => {
    const f = report.findings;
    assert.equal(shouldFail(f, 'critical'), true);
    assert.equal(shouldFail(f.filter((x) => x.severity === 'low' || x.severity === 'info'), 'medium'), false);
    assert.equal(shouldFail(f, 'none'), false);
  });

  it('the CLI writes SARIF, exits 1 on findings at --fail-on, and 0 once a baseline accepts them', async () => {
    const s = io(dir);
    assert.equal(await runAuditCommand([dir, '--sarif', '--no-env'], s.io), 1);
    assert.ok(validator()(JSON.parse(s.out())));
    const b = join(dir, 'baseline.json');
    const w = io(dir);
    assert.equal(await runAuditCommand([dir, '--no-env', '--write-baseline', b, '--json'], w.io), 1);
    const again = io(dir);
    assert.equal(await runAuditCommand([dir, '--no-env', '--baseline', b, '--fail-on', 'info'], again.io), 0, again.out());
    assert.match(again.out(), /no findings.*accepted by the baseline/);
    const usage = io(dir);
    assert.equal(await runAuditCommand(['--fail-on', 'severe'], usage.io), 2);
  });
});
