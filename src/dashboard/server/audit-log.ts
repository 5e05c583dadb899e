/**
 * The audit log: one JSON object per line, appended (never rewritten) to a
 * file opened with O_APPEND, mode 0600. Who, what, when, from where, outcome.
 */
import { appendFileSync, closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { ConfigError } from '../../errors.ts';

export interface AuditEntry {
  /** ISO time. */
  at: string;
  /** User name, or `-` before login. */
  who: string;
  /** e.g. `login`, `login-failed`, `logout`, `revoke`, `view-clear`, `user-add`. */
  what: string;
  /** Remote address. */
  from: string;
  outcome: 'ok' | 'denied' | 'failed' | 'error';
  /** Action target and short detail (task id, queue, worker, reason). */
  detail?: Record<string, string | number | boolean | undefined>;
}

export interface AuditLog {
  write(entry: Omit<AuditEntry, 'at'>): void;
  /** Newest last; at most `limit` entries (default 500). */
  read(options?: { limit?: number }): AuditEntry[];
  /** The whole file, for export. */
  exportText(): string;
  readonly path: string;
}

/** Open (create if missing) the append-only audit log at `path`. */
export function createAuditLog(path: string): AuditLog {
  try {
    closeSync(openSync(path, 'a', 0o600));
  } catch (err) {
    throw new ConfigError(`cannot open the dashboard audit log ${path}`, { hint: 'pass --audit-log with a writable path', cause: err });
  }
  return {
    path,
    write(entry) {
      const line = JSON.stringify({ at: new Date().toISOString(), ...entry });
      // Synchronous on purpose: an action is not reported done before its audit line is on disk.
      appendFileSync(path, `${line}\n`, { mode: 0o600, flag: 'a' });
    },
    read(options = {}) {
      const limit = Math.min(Math.max(options.limit ?? 500, 1), 10_000);
      if (!existsSync(path)) return [];
      const lines = readFileSync(path, 'utf8').split('\n').filter((l) => l !== '');
      const out: AuditEntry[] = [];
      for (const line of lines.slice(-limit)) {
        try {
          out.push(JSON.parse(line) as AuditEntry);
        } catch {
          // A torn last line after a crash is skipped, not fatal.
        }
      }
      return out;
    },
    exportText() {
      return existsSync(path) ? readFileSync(path, 'utf8') : '';
    },
  };
}
