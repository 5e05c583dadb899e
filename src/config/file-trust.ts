/**
 * Whether a file Celeriac trusts can be trusted: one rule for the
 * start-up checks (secret files, key files, certificate stores, CA files)
 * and for `celeriac audit`, so the two never disagree (issue 20 #13).
 *
 * Whoever can change such a file decides what it says: a password that
 * points us at their broker, a key ring with their key, a certificate
 * store or CA bundle with their certificate. So a file is refused when
 *
 * - it is a secret and every user may read it;
 * - its group or every user may write it;
 * - it belongs to another user than the one running (root is fine);
 * - its directory — for the path as given and for the file it resolves to
 *   (secret mounts use symbolic links) — lets others replace it: writable
 *   by every user or by its group without the sticky bit, or owned by
 *   another user. Sticky directories (`/tmp`, Kubernetes' secret volumes)
 *   are fine: others cannot replace a file there.
 */
import { realpathSync, statSync, type Stats } from 'node:fs';
import { dirname, resolve } from 'node:path';

/** What is wrong with a trusted file, worded to follow "the file <path> …". */
export interface FileTrustProblem {
  /** e.g. `is writable by every user (mode 666)`; never any of the file's content. */
  problem: string;
  /** The typed error code start-up uses for it. */
  code: 'ERR_SECRET_FILE_MODE' | 'ERR_SECRET_FILE_OWNER' | 'ERR_SECRET_FILE_DIR';
  /** The command or change that fixes it. */
  fix: string;
  /** The file's mode bits and owner (for reports). */
  mode: number;
  uid: number;
}

export interface FileTrustOptions {
  /** A secret (also refused when every user may read it); false for public trust anchors (certificates, CA bundles). */
  secret: boolean;
  /** The user the worker runs as (default: this process's); `null`: unknown, so the owner rules are skipped. */
  uid?: number | null | undefined;
}

const currentUid = (): number | undefined => (typeof process.getuid === 'function' ? process.getuid() : undefined);

/**
 * The first reason `path` cannot be trusted (see the module comment), or
 * `undefined` when it can — also when it does not exist (whoever reads it
 * reports that).
 */
export function fileTrustProblem(path: string, options: FileTrustOptions): FileTrustProblem | undefined {
  const uid = options.uid === null ? undefined : (options.uid ?? currentUid());
  let st: Stats;
  let real: string;
  try {
    st = statSync(path);
    real = realpathSync(path);
  } catch {
    return undefined;
  }
  const mode = st.mode & 0o777;
  const m = mode.toString(8).padStart(3, '0');
  const base = { mode, uid: st.uid };
  if (st.isDirectory()) {
    // A directory of trusted files (a certificate store): others must not be able to add or replace files in it.
    const problem = unsafeDirectory(path, uid);
    if (problem) return { ...base, problem: `is a directory that ${problem}: they could add or replace files in it`, code: 'ERR_SECRET_FILE_DIR', fix: `chmod go-w ${path}${problem.includes('another user') ? ` and chown ${uid ?? 'the worker user'} ${path}` : ''}` };
  } else if (options.secret && mode & 0o004) {
    return { ...base, problem: `is readable by every user (mode ${m})`, code: 'ERR_SECRET_FILE_MODE', fix: `chmod 600 ${path}` };
  }
  if (!st.isDirectory() && mode & 0o022) {
    return {
      ...base,
      problem: `is writable by ${mode & 0o002 ? 'every user' : 'its group'} (mode ${m}): whoever can write it can swap its content`,
      code: 'ERR_SECRET_FILE_MODE',
      fix: options.secret ? `chmod 600 ${path} (or 640/440 to share read access with a group)` : `chmod go-w ${path}`,
    };
  }
  if (!st.isDirectory() && uid !== undefined && st.uid !== uid && st.uid !== 0) {
    return {
      ...base,
      problem: `belongs to another user (uid ${st.uid}), who can change it at any time`,
      code: 'ERR_SECRET_FILE_OWNER',
      fix: `chown ${uid} ${path} (as root), or have root own it${options.secret ? ' (mode 0400/0440)' : ''}`,
    };
  }
  for (const dir of new Set([dirname(resolve(path)), dirname(real)])) {
    const problem = unsafeDirectory(dir, uid);
    if (problem) {
      return {
        ...base,
        problem: `is in directory ${dir}, which ${problem}: they could replace the file`,
        code: 'ERR_SECRET_FILE_DIR',
        fix: `keep it in a directory only its owner (or root) can write: chmod go-w ${dir}, or move the file`,
      };
    }
  }
  return undefined;
}

/**
 * Why a directory lets other users replace the files in it, or `undefined`:
 * writable by every user or by its group without the sticky bit, or owned
 * by another user than `uid` and root. Used for trusted files and for
 * `celeriac secrets generate --out`.
 */
export function unsafeDirectory(dir: string, uid: number | undefined = currentUid()): string | undefined {
  let st: Stats;
  try {
    st = statSync(dir);
  } catch {
    return undefined; // the file's own read reports a missing path
  }
  const sticky = (st.mode & 0o1000) !== 0;
  if (!sticky && st.mode & 0o002) return `every user may write to (mode ${(st.mode & 0o7777).toString(8)})`;
  if (!sticky && st.mode & 0o020) return `its group may write to (mode ${(st.mode & 0o7777).toString(8)})`;
  if (uid !== undefined && st.uid !== uid && st.uid !== 0) return `belongs to another user (uid ${st.uid})`;
  return undefined;
}
