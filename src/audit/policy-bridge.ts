/**
 * The audit's settings checks ARE the start-up policy: this module only
 * runs `evaluatePolicy` (always in production mode, the mode a deployment
 * is judged by) and turns its findings into audit findings with a
 * severity and a location. No rule is repeated here, so the worker's
 * refusal and the audit cannot disagree.
 */
import { evaluatePolicy, UNSAFE_OPTIONS, type Finding, type PolicyInput } from '../config/policy.ts';
import { ConfigError } from '../errors.ts';
import { redactAll } from '../config/redact.ts';
import { checkInfo, type AuditFinding, type FindingLocation, type Severity } from './types.ts';

/** Where the policy's settings live, to point findings at a file and line. */
export interface PolicySource {
  file?: string;
  /** Line of each policy setting (`brokerUrl`, `acceptContent`, …). */
  lines?: Partial<Record<string, number>>;
  /** Display name of each policy setting (`broker_url` for a Python config). */
  names?: Partial<Record<string, string>>;
  /** Prefix for messages: `celeryconfig.py`, `environment`, … */
  label?: string;
}

function baseSetting(setting: string): string {
  return setting.split(/[.\s]/)[0]!;
}

function severityOf(f: Finding, refused: boolean): Severity {
  if (!refused && !f.override && (UNSAFE_OPTIONS as readonly string[]).includes(f.setting)) return 'low'; // an override nothing needs
  return checkInfo(f.id).severity;
}

function toAudit(f: Finding, refused: boolean, src: PolicySource): AuditFinding {
  const base = baseSetting(f.setting);
  const display = src.names?.[base] ? f.setting.replace(base, src.names[base]!) : f.setting;
  const location: FindingLocation = {};
  if (src.file) location.file = src.file;
  const line = src.lines?.[base];
  if (line !== undefined) location.line = line;
  return {
    id: f.id,
    severity: severityOf(f, refused),
    setting: display,
    message: redactAll(refused ? `${f.message} (a Celeriac worker refuses to start with this setting in production)` : f.message),
    fix: redactAll(f.fix),
    kind: 'static',
    location,
    fromPolicy: true,
  };
}

/**
 * Run the start-up policy in production mode over `input` and return its
 * refusals and warnings as audit findings. A URL or TLS setting the policy
 * cannot parse becomes a finding too (the worker would refuse it as well).
 */
export function policyFindings(input: Omit<PolicyInput, 'mode'>, src: PolicySource = {}): AuditFinding[] {
  const run = (part: Omit<PolicyInput, 'mode'>): AuditFinding[] => {
    const report = evaluatePolicy({ ...part, mode: 'production' });
    return [...report.refusals.map((f) => toAudit(f, true, src)), ...report.warnings.map((f) => toAudit(f, false, src))];
  };
  try {
    return run(input);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
  }
  // One unreadable setting must not hide the others: judge broker, backend and content separately.
  const { brokerUrl, brokerUseSsl, resultBackend, redisBackendUseSsl, ...rest } = input;
  const parts: [string, Omit<PolicyInput, 'mode'>][] = [
    ['brokerUrl', { brokerUrl, brokerUseSsl }],
    ['resultBackend', { resultBackend, redisBackendUseSsl }],
    ['acceptContent', rest],
  ];
  const out: AuditFinding[] = [];
  for (const [setting, part] of parts) {
    try {
      out.push(...run(part));
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      const tls = err.code === 'ERR_TLS_CONFIG';
      const backend = setting === 'resultBackend';
      out.push(toAudit({
        id: backend ? (tls ? 'CEL-015' : 'CEL-014') : tls ? 'CEL-003' : 'CEL-001', setting,
        message: `${src.label ? `${src.label}: ` : ''}the setting cannot be read: ${err.message}`,
        fix: 'correct the setting; a Celeriac worker refuses to start with it',
      }, true, src));
    }
  }
  return out;
}
