/**
 * File-system safety of an embedded SQLite database (broker or result
 * backend). On one machine, file permissions are the whole access control:
 * whoever can write the file can inject tasks and forge results, whoever can
 * read it sees every argument and result.
 *
 * `evaluateSqlitePath` is pure (facts in, findings out) so that the security
 * policy and `celeriac audit` can reuse it; `gatherSqlitePathFacts` reads the
 * facts from the file system.
 *
 * Rules:
 * - the database's directory must not be world-writable (sticky or not):
 *   another user could pre-create `<db>-wal`, `<db>-shm` or the database
 *   itself, or plant symlinks there → refusal;
 * - the database and its companion files (`-wal`, `-shm`, `-journal`, the
 *   wake-up files) must not be symlinks → refusal;
 * - they must be regular files → refusal;
 * - no access for "other" users on an existing file → refusal (fix: chmod 600);
 * - group access, a group-writable directory, or files owned by another
 *   user → warnings (legitimate for workers sharing a group).
 *
 * New files are created by the adapter with mode 0600 in a directory created
 * with mode 0700.
 */
import { lstatSync, readlinkSync, statSync, type Stats } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { Finding, FileCheckResult } from '../../config/policy.ts';

/** Which component the database serves (decides the mitigation id). */
export type SqliteRole = 'broker' | 'backend';

/** What is on disk at one path. */
export interface PathEntryFacts {
  path: string;
  /** `missing`, a regular `file`, a `symlink`, a `directory`, or `other` (FIFO, device, socket). */
  kind: 'missing' | 'file' | 'symlink' | 'directory' | 'other';
  /** Permission bits (`mode & 0o7777`), when the entry exists. */
  mode?: number;
  /** Owner uid, when the entry exists. */
  uid?: number;
  /** Target of a symlink, for messages. */
  linkTarget?: string;
}

/** Facts about a database path, as read from the file system. */
export interface SqlitePathFacts {
  /** Absolute path of the database file. */
  path: string;
  /** Its directory (followed through symlinks: the directory's own permissions count). */
  directory: PathEntryFacts;
  /** The database file itself. */
  database: PathEntryFacts;
  /** `-wal`, `-shm`, `-journal` and the wake-up side files. */
  companions: PathEntryFacts[];
  /** uid of the process that will open the file (undefined on Windows). */
  processUid: number | undefined;
}

/** Suffixes of the files SQLite and the adapters create beside the database. */
export const SQLITE_COMPANION_SUFFIXES: readonly string[] = ['-wal', '-shm', '-journal', '-wake-queue', '-wake-result'];

const octal = (mode: number): string => `0${(mode & 0o7777).toString(8).padStart(3, '0')}`;

/**
 * Judge a database path. Pure: the same facts always give the same findings.
 * Messages name the path and the fix; they never contain secrets (paths are
 * not secret).
 */
export function evaluateSqlitePath(facts: SqlitePathFacts, role: SqliteRole): Required<FileCheckResult> {
  const refusals: Finding[] = [];
  const warnings: Finding[] = [];
  const id = role === 'broker' ? 'CEL-001' : 'CEL-014';
  const setting = role === 'broker' ? 'brokerUrl' : 'resultBackend';
  const what = role === 'broker' ? 'inject, read or delete tasks' : 'read or forge results';
  const { directory: dir } = facts;

  if (dir.kind !== 'missing' && dir.kind !== 'directory') {
    refusals.push({ id, setting, message: `SQLite database directory ${dir.path} is not a directory`, fix: `point ${setting} at a file inside a directory` });
  }
  if (dir.kind === 'directory' && dir.mode !== undefined) {
    if (dir.mode & 0o002) {
      refusals.push({
        id,
        setting,
        message: `SQLite database directory ${dir.path} is world-writable (mode ${octal(dir.mode)}): any local user could plant files or symlinks beside ${facts.path} and ${what}`,
        fix: `keep the database in a private directory: chmod o-w ${dir.path}, or use a path such as sqlite://.celeriac/celeriac.db (created with mode 0700)`,
      });
    } else if (dir.mode & 0o020) {
      warnings.push({
        id,
        setting,
        message: `SQLite database directory ${dir.path} is group-writable (mode ${octal(dir.mode)}): members of its group can replace the database`,
        fix: `chmod g-w ${dir.path} unless every member of the group should be able to ${what}`,
      });
    }
    if (facts.processUid !== undefined && dir.uid !== undefined && dir.uid !== facts.processUid && dir.uid !== 0) {
      warnings.push({
        id,
        setting,
        message: `SQLite database directory ${dir.path} belongs to another user (uid ${dir.uid}), who can replace the database`,
        fix: `keep the database in a directory owned by the user running Celeriac (uid ${facts.processUid})`,
      });
    }
  }

  for (const entry of [facts.database, ...facts.companions]) {
    if (entry.kind === 'missing') continue;
    if (entry.kind === 'symlink') {
      refusals.push({
        id,
        setting,
        message: `${entry.path} is a symlink${entry.linkTarget !== undefined ? ` to ${entry.linkTarget}` : ''}: SQLite would read and write whatever it points to`,
        fix: `remove the symlink (rm ${entry.path}) and point ${setting} at the real file`,
      });
      continue;
    }
    if (entry.kind !== 'file') {
      refusals.push({ id, setting, message: `${entry.path} is not a regular file`, fix: `remove it or choose another path for ${setting}` });
      continue;
    }
    if (entry.mode === undefined) continue;
    if (entry.mode & 0o007) {
      refusals.push({
        id,
        setting,
        message: `${entry.path} is accessible to every local user (mode ${octal(entry.mode)}): they could ${what}`,
        fix: `chmod 600 ${entry.path}`,
      });
    } else if (entry.mode & 0o070) {
      warnings.push({
        id,
        setting,
        message: `${entry.path} is accessible to its group (mode ${octal(entry.mode)})`,
        fix: `chmod 600 ${entry.path} unless the group's members run Celeriac too`,
      });
    }
    if (facts.processUid !== undefined && entry.uid !== undefined && entry.uid !== facts.processUid) {
      warnings.push({
        id,
        setting,
        message: `${entry.path} belongs to another user (uid ${entry.uid})`,
        fix: `chown it to the user running Celeriac (uid ${facts.processUid}), or run Celeriac as its owner`,
      });
    }
  }
  return { refusals, warnings };
}

function entryFacts(path: string): PathEntryFacts {
  let st: Stats;
  try {
    st = lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { path, kind: 'missing' };
    throw err;
  }
  const base = { path, mode: st.mode & 0o7777, uid: st.uid };
  if (st.isSymbolicLink()) {
    let linkTarget: string | undefined;
    try {
      linkTarget = readlinkSync(path);
    } catch {
      linkTarget = undefined;
    }
    return { ...base, kind: 'symlink', ...(linkTarget !== undefined ? { linkTarget } : {}) };
  }
  return { ...base, kind: st.isFile() ? 'file' : st.isDirectory() ? 'directory' : 'other' };
}

/** Read the facts about `path` (made absolute against `cwd`) from the file system. */
export function gatherSqlitePathFacts(path: string, cwd: string = process.cwd()): SqlitePathFacts {
  const abs = resolve(cwd, path);
  const dirPath = dirname(abs);
  let directory: PathEntryFacts;
  try {
    // stat, not lstat: a symlinked directory (macOS /tmp → /private/tmp) is fine; its target's permissions count.
    const st = statSync(dirPath);
    directory = { path: dirPath, kind: st.isDirectory() ? 'directory' : 'other', mode: st.mode & 0o7777, uid: st.uid };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    directory = { path: dirPath, kind: 'missing' };
  }
  return {
    path: abs,
    directory,
    database: entryFacts(abs),
    companions: SQLITE_COMPANION_SUFFIXES.map((s) => entryFacts(abs + s)),
    processUid: typeof process.getuid === 'function' ? process.getuid() : undefined,
  };
}

/**
 * Gather and evaluate in one call: what the security policy's `fileChecks`
 * takes. Windows has no POSIX modes, so nothing is checked there.
 */
export function sqliteFileChecks(path: string, role: SqliteRole, cwd: string = process.cwd()): Required<FileCheckResult> {
  if (process.platform === 'win32') return { refusals: [], warnings: [] };
  return evaluateSqlitePath(gatherSqlitePathFacts(path, cwd), role);
}
