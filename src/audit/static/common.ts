/**
 * Helpers shared by the static checks: secret-looking names and values,
 * secret-file modes, certificate expiry, `.env` parsing.
 */
import { X509Certificate } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileTrustProblem, type FileTrustProblem } from '../../config/file-trust.ts';
import type { MitigationId } from '../../config/policy.ts';
import { redactAll, redactUrl } from '../../config/redact.ts';
import type { AuditFinding, Severity } from '../types.ts';

/** Names whose values are secrets (`REDIS_PASSWORD`, `api_token`, `SECRET_KEY`, …), but not paths to them (`…_FILE`). */
export function isSecretName(name: string): boolean {
  if (/(_FILE|_PATH|_DIR|_FILENAME)$/i.test(name)) return false;
  return /(pass(word|wd)?|pwd|secret|token|api_?key|private_?key|secret_?key|auth_?key|credentials?)$/i.test(name.replace(/[-.]/g, '_'));
}

/** A value that only points at a secret (a path, an interpolation, an empty or placeholder value) rather than being one. */
export function isReferenceValue(v: string): boolean {
  const s = v.trim();
  return s === '' || /^\$\{[^}]+\}$|^\$[A-Za-z_]\w*$/.test(s) || /^\$\{(file|env):/.test(s) || s.startsWith('/') || /^(changeme|<.*>|xxx+|\*+)$/i.test(s);
}

/** The password inside a URL (`scheme://user:pass@host`), or undefined. Literal `${…}` references do not count. */
export function urlPassword(v: string): { username: string | undefined; password: string } | undefined {
  const m = /^[a-z][a-z0-9+.-]*:\/\/([^/@:\s]*):([^/@\s]*)@/i.exec(v.trim());
  if (!m || !m[2] || /^\$\{/.test(m[2]) || /^\$[A-Za-z_]/.test(m[2])) return undefined;
  let password = m[2];
  try {
    password = decodeURIComponent(password);
  } catch {
    // keep as written
  }
  return { username: m[1] || undefined, password };
}

/** Show a value in a message without its secret part. */
export function showValue(v: string): string {
  return /:\/\//.test(v) ? redactUrl(v) : redactAll(v);
}

/** Make a finding (static). */
export function finding(id: MitigationId, severity: Severity, setting: string, message: string, fix: string, file?: string, line?: number): AuditFinding {
  const location: AuditFinding['location'] = {};
  if (file) location.file = file;
  if (line !== undefined) location.line = line;
  return { id, severity, setting, message: redactAll(message), fix: redactAll(fix), kind: 'static', location };
}

/**
 * The user the audited workers run as, for the owner rules: set by
 * `runAudit` for its static checks (`AuditOptions.workerUid`), else the
 * user running the audit — none when that is root, who cannot tell whose
 * files are whose (the mode and directory rules still apply).
 */
let workerUid: number | undefined;
let workerUidSet = false;

/** @internal Set (or, with `undefined` and `set` false, clear) the workers' user for the static checks of one audit. */
export function setAuditWorkerUid(uid: number | undefined, set: boolean): void {
  workerUid = uid;
  workerUidSet = set;
}

/** The workers' user as the audit judges owners (see `setAuditWorkerUid`); `null` when unknown. */
export function auditUid(): number | null {
  if (workerUidSet) return workerUid ?? null;
  const uid = typeof process.getuid === 'function' ? process.getuid() : undefined;
  return uid === 0 || uid === undefined ? null : uid;
}

/**
 * Why a secret file (or, with `secret: false`, a trusted public file: a
 * certificate store, a CA bundle) cannot be trusted — the very rule
 * Celeriac applies when it reads the file at start (config/file-trust.ts):
 * mode, owner, and the directories of the path and of its target.
 */
export function secretFileProblem(path: string, secret = true): FileTrustProblem | undefined {
  return fileTrustProblem(path, { secret, uid: auditUid() });
}

/**
 * CEL-007 findings for a certificate store another user could change (a
 * PEM file, or a directory and the files in it): they could add a signer
 * of their own. The rule a Celeriac worker applies when it loads the store.
 */
export function certStoreFindings(path: string, setting: string, file?: string, line?: number): AuditFinding[] {
  let entries: string[] = [path];
  try {
    if (statSync(path).isDirectory()) entries = [path, ...readdirSync(path).filter((n) => !n.startsWith('.')).sort().map((n) => join(path, n))];
  } catch {
    return [];
  }
  const out: AuditFinding[] = [];
  for (const e of entries) {
    const p = secretFileProblem(e, false);
    if (p) out.push(finding('CEL-007', 'high', setting, `the certificate store ${e} ${p.problem}: another user of the host could add a signer of their own (a Celeriac worker refuses it)`, p.fix, file, line));
  }
  return out;
}

/** Days until a certificate expires (negative when expired). */
export function daysToExpiry(cert: X509Certificate, now = Date.now()): number {
  return Math.floor((Date.parse(cert.validTo) - now) / 86_400_000);
}

/** Expiry findings (CEL-012) for the certificates in a PEM file or text. Days within which expiry is reported. */
export const EXPIRY_WARNING_DAYS = 14;

/** Read the first certificate in a PEM file; undefined when absent or not a certificate. */
export function readCertificate(pathOrPem: string): X509Certificate | undefined {
  try {
    const text = pathOrPem.includes('-----BEGIN') ? pathOrPem : readFileSync(pathOrPem, 'utf8');
    const m = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(text);
    return m ? new X509Certificate(m[0]) : undefined;
  } catch {
    return undefined;
  }
}

/** CEL-012 finding for a certificate that expired or expires within {@link EXPIRY_WARNING_DAYS}. */
export function certificateExpiryFinding(cert: X509Certificate, what: string, setting: string, file?: string, line?: number): AuditFinding | undefined {
  const days = daysToExpiry(cert);
  if (days >= EXPIRY_WARNING_DAYS) return undefined;
  const f = finding(
    'CEL-012', days < 0 ? 'high' : 'medium', setting,
    days < 0 ? `${what} expired on ${cert.validTo} (${cert.subject.replace(/\n/g, ', ')})` : `${what} expires in ${days} day${days === 1 ? '' : 's'} (${cert.validTo})`,
    'issue a new certificate and roll it out before the old one expires (Celeriac: celeriac secrets generate rsa-cert; reload with SIGHUP)',
    file, line,
  );
  f.key = `CEL-012|${setting}|${file ?? ''}|${cert.fingerprint256}`;
  return f;
}

/** Parse a `.env` file: `KEY=value`, `export KEY=value`, quotes, comments. Returns entries with their lines. */
export function parseDotenv(text: string): { key: string; value: string; line: number }[] {
  const out: { key: string; value: string; line: number }[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const m = /^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(.*)$/.exec(raw);
    if (!m) return;
    let v = m[2]!.trim();
    if ((v.startsWith('"') && v.endsWith('"') && v.length >= 2) || (v.startsWith("'") && v.endsWith("'") && v.length >= 2)) {
      const dq = v.startsWith('"');
      v = v.slice(1, -1);
      if (dq) v = v.replace(/\\n/g, '\n').replace(/\\"/g, '"');
    } else {
      v = v.replace(/\s+#.*$/, '');
    }
    out.push({ key: m[1]!, value: v, line: i + 1 });
  });
  return out;
}
