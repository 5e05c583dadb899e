/**
 * Local accounts: a JSON users file (mode 0600) of names, roles and scrypt
 * password hashes (node:crypto). Passwords must pass the project's strength
 * rule (src/config/weak-credentials.ts: 16+ characters and 10^12 zxcvbn guesses).
 */
import { randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { existsSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { ConfigError, ValidationError } from '../../errors.ts';
import { estimateGuessesLog10, isKnownWeakPassword, MIN_GUESSES_LOG10, MIN_PASSWORD_LENGTH } from '../../config/weak-credentials.ts';
import { isRole, type Role } from './roles.ts';

export interface UserRecord {
  name: string;
  role: Role;
  /** The separate permission to see args/kwargs/results in clear. */
  viewClear?: boolean;
  /** `scrypt$N$r$p$salt_b64$hash_b64`. */
  hash: string;
  disabled?: boolean;
}

/**
 * scrypt cost N=2^15, r=8, p=1 (32 MiB, about 0.1-0.2 s of one core per check on a loaded host; measured
 * 0.2 s on a busy 2-core machine). Stored with each hash, so it can be raised later without invalidating accounts.
 */
const SCRYPT = { N: 1 << 15, r: 8, p: 1, keylen: 32 };

function scrypt(password: string, salt: Buffer, keylen: number, opts: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => scryptCb(password, salt, keylen, opts, (err, key) => (err ? reject(err) : resolve(key))));
}

/** Hash a password for the users file. */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await scrypt(password, salt, SCRYPT.keylen, { N: SCRYPT.N, r: SCRYPT.r, p: SCRYPT.p, maxmem: 128 * SCRYPT.N * SCRYPT.r * 2 });
  return `scrypt$${SCRYPT.N}$${SCRYPT.r}$${SCRYPT.p}$${salt.toString('base64')}$${key.toString('base64')}`;
}

/** Constant-time check of `password` against a stored hash; false for a malformed hash. */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const parts = stored.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [N, r, p] = [Number(parts[1]), Number(parts[2]), Number(parts[3])];
  if (![N, r, p].every((n) => Number.isInteger(n) && n > 0) || N > 1 << 20) return false;
  const salt = Buffer.from(parts[4] ?? '', 'base64');
  const expected = Buffer.from(parts[5] ?? '', 'base64');
  if (expected.length < 16) return false;
  const key = await scrypt(password, salt, expected.length, { N, r, p, maxmem: 128 * N * r * 2 });
  return timingSafeEqual(key, expected);
}

/** Why `password` is refused for `name`, or undefined when it is strong enough. */
export function passwordProblem(name: string, password: string): string | undefined {
  if (password.length < MIN_PASSWORD_LENGTH) return `the password is shorter than ${MIN_PASSWORD_LENGTH} characters`;
  if (isKnownWeakPassword(password)) return 'the password is a known default or leaked password';
  if (estimateGuessesLog10(password, [name, 'dashboard']) < MIN_GUESSES_LOG10) {
    return 'the password is too easy to guess (common words, names, keyboard walks or repeats); `celeriac secrets generate password` makes a strong one';
  }
  return undefined;
}

const NAME_RE = /^[A-Za-z0-9._@-]{1,64}$/;

export interface UserStore {
  get(name: string): UserRecord | undefined;
  list(): UserRecord[];
  /** Add or replace a user; the password is strength-checked. Persists to the file. */
  add(name: string, password: string, role: Role, options?: { viewClear?: boolean }): Promise<UserRecord>;
  remove(name: string): boolean;
  readonly path: string;
}

function parseUsers(path: string, text: string): UserRecord[] {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`users file ${path} is not valid JSON`, { hint: 'create it with `celeriac dashboard users add <name> --role <role> --users-file <path>`', cause: err });
  }
  const list = (data as { users?: unknown })?.users;
  if (!Array.isArray(list)) throw new ConfigError(`users file ${path} has no "users" array`, { hint: 'create it with `celeriac dashboard users add`' });
  return list.map((u: Record<string, unknown>, i) => {
    if (typeof u?.name !== 'string' || !NAME_RE.test(u.name) || !isRole(u.role) || typeof u.hash !== 'string') {
      throw new ConfigError(`users file ${path}: entry ${i} is malformed`, { hint: 'each entry needs name, role (viewer|operator|admin) and hash' });
    }
    return { name: u.name, role: u.role, hash: u.hash, viewClear: u.viewClear === true, disabled: u.disabled === true };
  });
}

/** Open the users file (a missing file is an empty store, created on the first add). */
export function openUserStore(path: string): UserStore {
  const users = new Map<string, UserRecord>();
  let loadedMtime = -1;
  /**
   * Re-read the file when it changed on disk, so an account added or removed with
   * `celeriac dashboard users` while the dashboard runs counts at the next login,
   * and a change made in the UI does not overwrite it. A file that became
   * unreadable keeps the last good copy (logged in as before, not locked out).
   */
  const refresh = (): void => {
    let mtime = 0;
    try {
      mtime = existsSync(path) ? statSync(path).mtimeMs : 0;
    } catch {
      return;
    }
    if (mtime === loadedMtime) return;
    const fresh = mtime === 0 ? [] : parseUsers(path, readFileSync(path, 'utf8'));
    users.clear();
    for (const u of fresh) users.set(u.name, u);
    loadedMtime = mtime;
  };
  refresh();
  const save = (): void => {
    const tmp = `${path}.${process.pid}.tmp`;
    writeFileSync(tmp, `${JSON.stringify({ users: [...users.values()] }, null, 2)}\n`, { mode: 0o600 });
    renameSync(tmp, path);
    loadedMtime = statSync(path).mtimeMs;
  };
  const safeRefresh = (): void => {
    try {
      refresh();
    } catch {
      // A half-written or broken file while someone edits it: keep serving the last good copy.
    }
  };
  return {
    path,
    get: (name) => (safeRefresh(), users.get(name)),
    list: () => (safeRefresh(), [...users.values()]),
    async add(name, password, role, options = {}) {
      if (!NAME_RE.test(name)) throw new ValidationError(`user name ${JSON.stringify(name)} is not allowed`, { hint: 'use 1-64 letters, digits, . _ @ -' });
      const problem = passwordProblem(name, password);
      if (problem) throw new ValidationError(`password refused: ${problem}`, { hint: 'use 16+ random characters, e.g. from `celeriac secrets generate password`' });
      const record: UserRecord = { name, role, viewClear: options.viewClear === true, hash: await hashPassword(password) };
      refresh();
      users.set(name, record);
      save();
      return record;
    },
    remove(name) {
      refresh();
      const had = users.delete(name);
      if (had) save();
      return had;
    },
  };
}
