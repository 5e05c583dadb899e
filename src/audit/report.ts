/**
 * Audit output: human text grouped by severity (coloured on a terminal),
 * JSON, and SARIF 2.1.0 for code-scanning upload; baselines of accepted
 * findings; the exit decision for `--fail-on`.
 */
import { createHash } from 'node:crypto';
import { isAbsolute, relative, sep } from 'node:path';
import { pathToFileURL } from 'node:url';
import { redactAll } from '../config/redact.ts';
import type { AuditReport } from './index.ts';
import { CHECKS, checkDocPath, SEVERITIES, severityRank, type AuditFinding, type Severity } from './types.ts';

const TOOL_NAME = 'celeriac-audit';

function rel(file: string, baseDir: string): string {
  const r = relative(baseDir, file);
  return r && !r.startsWith('..') && !isAbsolute(r) ? r.split(sep).join('/') : file;
}

/** Fingerprint of a finding, stable across machines (file paths relative to `baseDir`). */
export function fingerprint(f: AuditFinding, baseDir: string): string {
  const loc = f.location.file ? rel(f.location.file, baseDir) : f.location.endpoint ?? '';
  // Messages may name absolute paths and counts (days to expiry): neither may change the fingerprint.
  const what = f.key ? f.key.split('|').pop()! : f.message.split(baseDir).join('').replace(/\d+/g, '#');
  return createHash('sha256').update(`${f.id}|${f.setting}|${loc}|${what}`).digest('hex').slice(0, 32);
}

/** A baseline: fingerprints of accepted findings. */
export interface Baseline {
  version: 1;
  accepted: { fingerprint: string; id: string; setting: string; where: string; message: string }[];
}

/** Build a baseline that accepts every finding of a report. */
export function makeBaseline(findings: readonly AuditFinding[], baseDir: string): Baseline {
  return {
    version: 1,
    accepted: findings.map((f) => ({
      fingerprint: fingerprint(f, baseDir), id: f.id, setting: f.setting,
      where: f.location.file ? `${rel(f.location.file, baseDir)}${f.location.line ? `:${f.location.line}` : ''}` : f.location.endpoint ?? '',
      message: f.message,
    })),
  };
}

/** Parse a baseline file's text; throws a plain Error naming the problem. */
export function parseBaseline(text: string): Baseline {
  const b = JSON.parse(text) as Baseline;
  if (!b || b.version !== 1 || !Array.isArray(b.accepted)) throw new Error('not a celeriac audit baseline (version 1 with an "accepted" list)');
  return b;
}

/** Split findings into new ones and ones the baseline accepts. */
export function applyBaseline(findings: readonly AuditFinding[], baseline: Baseline | undefined, baseDir: string): { active: AuditFinding[]; accepted: AuditFinding[] } {
  if (!baseline) return { active: [...findings], accepted: [] };
  const known = new Set(baseline.accepted.map((a) => a.fingerprint));
  const active: AuditFinding[] = [];
  const accepted: AuditFinding[] = [];
  for (const f of findings) (known.has(fingerprint(f, baseDir)) ? accepted : active).push(f);
  return { active, accepted };
}

/** Whether any finding is at or above `failOn`. */
export function shouldFail(findings: readonly AuditFinding[], failOn: Severity | 'none'): boolean {
  if (failOn === 'none') return false;
  return findings.some((f) => severityRank(f.severity) >= severityRank(failOn));
}

const COLOURS: Record<Severity, string> = { critical: '\x1b[1;35m', high: '\x1b[1;31m', medium: '\x1b[33m', low: '\x1b[36m', info: '\x1b[2m' };

function where(f: AuditFinding, baseDir: string): string {
  if (f.location.file) return `${rel(f.location.file, baseDir)}${f.location.line ? `:${f.location.line}` : ''}`;
  return f.location.endpoint ?? '';
}

/** Human-readable report. */
export function formatText(report: AuditReport, findings: readonly AuditFinding[], opts: { colour: boolean; baseDir: string; accepted?: number }): string {
  const c = (s: Severity, text: string): string => (opts.colour ? `${COLOURS[s]}${text}\x1b[0m` : text);
  const lines: string[] = [];
  for (const sev of SEVERITIES) {
    const group = findings.filter((f) => f.severity === sev);
    if (group.length === 0) continue;
    lines.push(c(sev, `${sev.toUpperCase()} (${group.length})`));
    for (const f of group) {
      lines.push(`  ${c(sev, `[${f.id}]`)} ${f.setting}${f.kind === 'live' ? ' (live)' : ''}`);
      const w = where(f, opts.baseDir);
      if (w) lines.push(`      at   ${w}`);
      lines.push(`      ${f.message}`);
      lines.push(`      fix: ${f.fix}`);
    }
    lines.push('');
  }
  for (const n of report.notes) lines.push(`note: ${n}`);
  const counts = SEVERITIES.map((s) => `${findings.filter((f) => f.severity === s).length} ${s}`).join(', ');
  lines.push(`${findings.length === 0 ? 'no findings' : `${findings.length} finding${findings.length === 1 ? '' : 's'}`}: ${counts}${opts.accepted ? ` (${opts.accepted} accepted by the baseline)` : ''}; ${report.files.length} file${report.files.length === 1 ? '' : 's'} read${report.live ? ', live probes run' : ''}`);
  return redactAll(lines.join('\n'));
}

/** JSON report. */
export function formatJson(report: AuditReport, findings: readonly AuditFinding[], opts: { baseDir: string; accepted: readonly AuditFinding[] }): string {
  const show = (f: AuditFinding) => ({ ...f, fingerprint: fingerprint(f, opts.baseDir) });
  return redactAll(JSON.stringify({
    tool: TOOL_NAME, version: 1, live: report.live, files: report.files, notes: report.notes,
    summary: Object.fromEntries(SEVERITIES.map((s) => [s, findings.filter((f) => f.severity === s).length])),
    findings: findings.map(show), accepted: opts.accepted.map(show),
  }, null, 2));
}

const LEVEL: Record<Severity, 'error' | 'warning' | 'note'> = { critical: 'error', high: 'error', medium: 'warning', low: 'note', info: 'note' };
const SECURITY_SEVERITY: Record<Severity, string> = { critical: '9.5', high: '8.0', medium: '5.5', low: '3.0', info: '0.0' };

/** SARIF 2.1.0 log: one run, every check as a rule, findings as results with file/line locations. */
export function formatSarif(findings: readonly AuditFinding[], opts: { baseDir: string; version: string }): string {
  const rules = CHECKS.map((c) => ({
    id: c.id,
    name: c.title.replace(/[^A-Za-z0-9]+(.)?/g, (_m, ch: string | undefined) => (ch ? ch.toUpperCase() : '')),
    shortDescription: { text: c.title },
    fullDescription: { text: `${c.title} (${c.id}; threat severity ${c.severity}). See ${checkDocPath(c.id)}.` },
    help: { text: `What it checks, why, and how to fix it in Celery and in Celeriac: ${checkDocPath(c.id)}` },
    defaultConfiguration: { level: LEVEL[c.severity] },
    properties: { tags: ['security', 'celery', 'celeriac'], 'security-severity': SECURITY_SEVERITY[c.severity] },
  }));
  const base = pathToFileURL(opts.baseDir.endsWith(sep) ? opts.baseDir : `${opts.baseDir}${sep}`).href;
  const results = findings.map((f) => {
    const location = f.location.file
      ? (() => {
        const r = rel(f.location.file!, opts.baseDir);
        const inside = r !== f.location.file;
        return {
          physicalLocation: {
            artifactLocation: inside ? { uri: r.split('/').map(encodeURIComponent).join('/'), uriBaseId: 'SRCROOT' } : { uri: pathToFileURL(f.location.file!).href },
            ...(f.location.line ? { region: { startLine: f.location.line } } : {}),
          },
        };
      })()
      : { logicalLocations: [{ name: f.location.endpoint ?? f.setting, kind: 'resource' }] };
    return {
      ruleId: f.id,
      ruleIndex: CHECKS.findIndex((c) => c.id === f.id),
      level: LEVEL[f.severity],
      message: { text: `${f.message}. Fix: ${f.fix}` },
      locations: [location],
      partialFingerprints: { 'celeriacAudit/v1': fingerprint(f, opts.baseDir) },
      properties: { severity: f.severity, setting: f.setting, kind: f.kind, fix: f.fix, ...(f.fromPolicy ? { startupPolicy: true } : {}) },
    };
  });
  return redactAll(JSON.stringify({
    $schema: 'https://json.schemastore.org/sarif-2.1.0.json',
    version: '2.1.0',
    runs: [{
      tool: { driver: { name: TOOL_NAME, semanticVersion: opts.version, version: opts.version, rules } },
      originalUriBaseIds: { SRCROOT: { uri: base } },
      results,
    }],
  }, null, 2));
}
