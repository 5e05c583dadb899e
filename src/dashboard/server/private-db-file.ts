/**
 * File-system safety of the dashboard's state database (sessions and lockout
 * counters). Whoever can write it can insert a session for a token they know
 * and log in as any role, so it gets the rules of the embedded broker's file
 * (src/transport/sqlite/file-safety.ts, which the dashboard may not import:
 * it is an engine's):
 *
 * - refused: a world-writable directory (another user could plant the file,
 *   its `-wal`/`-shm`/`-journal`, or symlinks there), a symlink or anything
 *   but a regular file at the database or a companion path, an existing file
 *   that other users may read or write;
 * - warned: group access to a file, a group-writable directory, a file or
 *   directory owned by another user;
 * - created by us: directory 0700, file 0600 with O_EXCL | O_NOFOLLOW (never
 *   through a planted symlink). SQLite gives `-wal` and `-shm` the database
 *   file's mode.
 */
import { closeSync, constants, fchmodSync, lstatSync, mkdirSync, openSync, statSync, type Stats } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { ConfigError } from '../../errors.ts';

/** The files SQLite creates beside a database. */
export const SQLITE_COMPANIONS: readonly string[] = ['-wal', '-shm', '-journal'];

const octal = (mode: number): string => `0${(mode & 0o777).toString(8).padStart(3, '0')}`;

function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** What is wrong with the place of `path`: refusals stop start-up, warnings are logged. Reads the file system; creates nothing. */
export function privateDbFileProblems(path: string): { refusals: Array<{ message: string; fix: string }>; warnings: string[] } {
  const refusals: Array<{ message: string; fix: string }> = [];
  const warnings: string[] = [];
  if (process.platform === 'win32') return { refusals, warnings };
  const uid = typeof process.getuid === 'function' ? process.getuid() : undefined;
  const abs = resolve(path);
  const dir = dirname(abs);
  let dst: Stats | undefined;
  try {
    // stat, not lstat: a symlinked directory (macOS /tmp) is fine; its target's permissions count.
    dst = statSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  if (dst && !dst.isDirectory()) refusals.push({ message: `${dir} is not a directory`, fix: 'point the session store at a file inside a directory' });
  if (dst?.isDirectory()) {
    if (dst.mode & 0o002) {
      refusals.push({
        message: `the directory ${dir} is world-writable (mode ${octal(dst.mode)}): any local user could plant files or symlinks beside ${abs} and forge dashboard sessions`,
        fix: `keep the session store in a private directory (chmod o-w ${dir}, or another path such as the users file's own directory)`,
      });
    } else if (dst.mode & 0o020) warnings.push(`the directory ${dir} of the session store is group-writable (mode ${octal(dst.mode)}): members of its group can replace it`);
    if (uid !== undefined && dst.uid !== uid && dst.uid !== 0) warnings.push(`the directory ${dir} of the session store belongs to another user (uid ${dst.uid})`);
  }
  for (const p of [abs, ...SQLITE_COMPANIONS.map((s) => abs + s)]) {
    const st = lstatOrUndefined(p);
    if (!st) continue;
    if (st.isSymbolicLink()) {
      refusals.push({ message: `${p} is a symlink: SQLite would read and write whatever it points to`, fix: `remove the symlink (rm ${p}) and point the session store at a real file` });
      continue;
    }
    if (!st.isFile()) {
      refusals.push({ message: `${p} is not a regular file`, fix: 'remove it or choose another path for the session store' });
      continue;
    }
    if (st.mode & 0o007) refusals.push({ message: `${p} is accessible to every local user (mode ${octal(st.mode)}): they could forge or read dashboard sessions`, fix: `chmod 600 ${p}` });
    else if (st.mode & 0o070) warnings.push(`${p} is accessible to its group (mode ${octal(st.mode)}); chmod 600 ${p} unless the group runs the dashboard`);
    if (uid !== undefined && st.uid !== uid) warnings.push(`${p} belongs to another user (uid ${st.uid})`);
  }
  return { refusals, warnings };
}

/**
 * Check `path` (a `ConfigError` naming the path and the fix on a refusal),
 * hand the warnings to `warn`, and create the directory (0700) and the file
 * (0600) when missing.
 */
export function preparePrivateDbFile(path: string, warn: (line: string) => void): void {
  mkdirSync(dirname(resolve(path)), { recursive: true, mode: 0o700 });
  const { refusals, warnings } = privateDbFileProblems(path);
  for (const w of warnings) warn(`dashboard: ${w}`);
  const first = refusals[0];
  if (first) {
    const more = refusals.length > 1 ? ` (and ${refusals.length - 1} more: ${refusals.slice(1).map((r) => r.message).join('; ')})` : '';
    throw new ConfigError(`refusing the dashboard session store: ${first.message}${more}`, { hint: first.fix, code: 'ERR_SQLITE_UNSAFE_PATH' });
  }
  try {
    const fd = openSync(path, constants.O_CREAT | constants.O_EXCL | constants.O_RDWR | (constants.O_NOFOLLOW ?? 0), 0o600);
    try {
      fchmodSync(fd, 0o600); // whatever the umask says
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
      throw new ConfigError(`cannot create the dashboard session store ${path}: ${(err as Error).message}`, {
        hint: 'check that the directory exists and is writable by this user, or keep sessions elsewhere with --session-store sqlite:<path> (a writable state directory: a users file mounted as a secret is read-only) or --session-store redis',
      });
    }
  }
}
