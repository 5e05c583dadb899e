/**
 * Helpers shared by the static checks: secret-looking names and values,
 * secret-file modes, certificate expiry, `.env` parsing.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
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

/** Mode problems of a secret file, using the same rule as Celeriac's secret-file reader: no access for others, no group write. */
export function secretFileProblem(path: string): { mode: number; uid: number; problem: string } | undefined {
  let st;
  try {
    st = statSync(path);
  } catch {
    return undefined;
  }
  const mode = st.mode & 0o777;
  if (mode & 0o004) return { mode, uid: st.uid, problem: `is readable by every user (mode ${mode.toString(8).padStart(3, '0')}, owner uid ${st.uid})` };
  if (mode & 0o022) return { mode, uid: st.uid, problem: `is writable by ${mode & 0o002 ? 'every user' : 'its group'} (mode ${mode.toString(8).padStart(3, '0')}, owner uid ${st.uid}): whoever can write it can swap the secret` };
  return undefined;
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
