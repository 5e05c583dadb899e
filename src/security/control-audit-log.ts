/**
 * The control audit log: an append-only JSON-lines file, one line per
 * control command received and per answer (see `control-guard.ts`).
 *
 * The file is opened once with `O_APPEND | O_CREAT | O_NOFOLLOW` and mode
 * 0600, and written with one synchronous `write` per line, so lines of
 * several workers sharing a file never interleave and a line is on disk
 * (in the page cache) before the command runs. Like secret files
 * (`config/env.ts`), it is refused when it is a symbolic link, not a
 * regular file, readable or writable by others, owned by another user, or
 * in a directory others may write to (they could swap it). It is not
 * rotated: rotate it with a tool that copies and truncates, or restart the
 * worker after moving it.
 */
import { closeSync, constants, fstatSync, lstatSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { unsafeDirectory } from '../config/env.ts';
import { ConfigError } from '../errors.ts';

/** Longest line written, bytes; longer entries are cut (their arguments first). */
export const AUDIT_LINE_MAX_BYTES = 8192;

/** An open audit file. */
export interface AuditLogFile {
  readonly path: string;
  /** Append one JSON line. Throws on an I/O error (the caller logs it). */
  append(entry: Record<string, unknown>): void;
  close(): void;
}

function modeProblem(mode: number): string | undefined {
  if (mode & 0o077) return `has mode ${(mode & 0o777).toString(8)}: other users may read or change it`;
  return undefined;
}

/** One JSON line of at most {@link AUDIT_LINE_MAX_BYTES}. */
export function auditLine(entry: Record<string, unknown>): string {
  let line = JSON.stringify(entry);
  if (Buffer.byteLength(line) + 1 > AUDIT_LINE_MAX_BYTES) {
    const cut = { ...entry, arguments: '[cut: too long]', reply: entry.reply === undefined ? undefined : '[cut: too long]', truncated: true };
    line = JSON.stringify(cut);
    if (Buffer.byteLength(line) + 1 > AUDIT_LINE_MAX_BYTES) line = JSON.stringify({ time: entry.time, hostname: entry.hostname, kind: entry.kind, method: String(entry.method).slice(0, 64), truncated: true });
  }
  return `${line}\n`;
}

/**
 * Open (creating it, mode 0600) the audit file at `path`. Throws
 * `ConfigError` naming the problem and the fix when the file or its
 * directory is unsafe, or it cannot be opened.
 */
export function openAuditLog(path: string, setting = 'workerControlAuditLog'): AuditLogFile {
  const full = resolve(path);
  const dir = dirname(full);
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new ConfigError(`${setting}: cannot create the directory ${dir} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { hint: 'create it, writable by the worker\'s user only', code: 'ERR_AUDIT_LOG' });
  }
  const dirProblem = unsafeDirectory(dir);
  if (dirProblem) {
    throw new ConfigError(`${setting}: the audit log ${full} is in directory ${dir}, which ${dirProblem}: they could replace or remove the log`, {
      hint: `chmod go-w ${dir}, or put the log in a directory only the worker's user can write`, code: 'ERR_AUDIT_LOG',
    });
  }
  try {
    const st = lstatSync(full);
    if (st.isSymbolicLink() || !st.isFile()) throw new ConfigError(`${setting}: ${full} is not a regular file`, { hint: 'point the setting at a plain file (symbolic links are refused)', code: 'ERR_AUDIT_LOG' });
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new ConfigError(`${setting}: cannot inspect ${full} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { hint: 'check the path and permissions', code: 'ERR_AUDIT_LOG' });
  }
  let fd: number;
  try {
    fd = openSync(full, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
  } catch (err) {
    throw new ConfigError(`${setting}: cannot open ${full} for appending (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { hint: 'check the path and that the worker\'s user may write it', code: 'ERR_AUDIT_LOG' });
  }
  const st = fstatSync(fd);
  const uid = typeof process.getuid === 'function' ? process.getuid() : undefined;
  const problem = !st.isFile() ? 'is not a regular file' : modeProblem(st.mode) ?? (uid !== undefined && st.uid !== uid ? `belongs to another user (uid ${st.uid})` : undefined);
  if (problem) {
    closeSync(fd);
    throw new ConfigError(`${setting}: the audit log ${full} ${problem}`, { hint: `run: chmod 600 ${full} (owned by the worker's user)`, code: 'ERR_AUDIT_LOG' });
  }
  let open = true;
  return {
    path: full,
    append(entry) {
      if (!open) return;
      writeSync(fd, auditLine(entry));
    },
    close() {
      if (!open) return;
      open = false;
      closeSync(fd);
    },
  };
}
