/**
 * Settings from the environment. Any variable `NAME` may instead be given
 * as `NAME_FILE`, the path of a secret file (Docker/Kubernetes secrets),
 * which must not be readable by other users.
 *
 * Secret references inside values (URLs): a value may contain
 *
 * - `${file:/run/secrets/redis_password}` — replaced by the contents of
 *   that file (one trailing newline stripped; the same mode rules as
 *   `NAME_FILE`: not readable by others, not writable by group or others);
 * - `${env:REDIS_PASSWORD}` — replaced by that environment variable.
 *
 * The replacement is always percent-encoded (`encodeURIComponent`), so a
 * secret can hold any character and can never change the structure of the
 * URL (no injected `@`, `/` or `?`). References are meant for the user
 * name and password positions, e.g.
 * `rediss://celeriac:${file:/run/secrets/redis_password}@redis.internal:6379/0`.
 * Only the two forms above are special; any other `${…}` is left as is.
 * Resolved values are registered for redaction, so they never reach a log.
 */
import { readFileSync } from 'node:fs';
import { ConfigError } from '../errors.ts';
import { fileTrustProblem } from './file-trust.ts';
import { redactAll, redactText, registerSecret } from './redact.ts';

export type Env = Readonly<Record<string, string | undefined>>;

/**
 * Read a secret file: refuse files readable by other users or writable by
 * group/others, files owned by another user (other than root), and files
 * in a directory that others may write to (they could swap the file) —
 * checked for the path as given and for the file it resolves to (secret
 * mounts use symbolic links); sticky directories such as `/tmp` and
 * Kubernetes' secret volumes are fine, since others cannot replace a file
 * there. Refuse empty files, strip one trailing newline, remember the
 * value for redaction.
 */
export function readSecretFile(path: string, what: string, options: { uid?: number | null } = {}): string {
  // One rule with `celeriac audit` (file-trust.ts): mode, owner, and the directories of the path and its target.
  // `uid`: whose files count as the worker's (the audit's choice); default this process's user.
  const p = fileTrustProblem(path, { secret: true, uid: options.uid });
  if (p) throw new ConfigError(`${what}: secret file ${path} ${p.problem}`, { hint: `run: ${p.fix}`, code: p.code });
  let value: string;
  try {
    value = readFileSync(path, 'utf8').replace(/\r?\n$/, '');
  } catch (err) {
    throw new ConfigError(`${what}: secret file ${path} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`, {
      hint: 'check the path and that this user may read it',
      code: 'ERR_SECRET_FILE',
    });
  }
  if (value === '') {
    throw new ConfigError(`${what}: secret file ${path} is empty`, { hint: 'write the secret into the file, e.g. with `celeriac secrets generate password --format file`', code: 'ERR_SECRET_FILE' });
  }
  registerSecret(value);
  return value;
}

export { unsafeDirectory } from './file-trust.ts';

const REF_RE = /\$\{(file|env):([^}]*)\}/g;

/**
 * Replace `${file:PATH}` and `${env:NAME}` references in a value (see the
 * module comment) by the percent-encoded secret. Throws `ConfigError`
 * naming the reference (never the secret) when a file or variable is
 * missing, empty, or a file's mode is unsafe.
 */
export function resolveSecretRefs(value: string, env: Env = process.env, options: { uid?: number | null } = {}): string {
  if (!value.includes('${')) return value;
  return value.replace(REF_RE, (_m, type: string, target: string) => {
    const ref = `\${${type}:${target}}`;
    if (target === '') throw new ConfigError(`secret reference ${ref} names nothing`, { hint: 'write ${file:/path/to/secret} or ${env:VARIABLE}', code: 'ERR_SECRET_REF' });
    let secret: string;
    if (type === 'file') {
      secret = readSecretFile(target, `secret reference ${ref}`, options);
    } else {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(target)) {
        throw new ConfigError(`secret reference ${ref}: ${JSON.stringify(target)} is not a variable name`, { code: 'ERR_SECRET_REF' });
      }
      const v = env[target];
      if (v === undefined || v === '') {
        throw new ConfigError(`secret reference ${ref}: environment variable ${target} is not set`, { hint: `export ${target}, or use \${file:…} with a secret file`, code: 'ERR_SECRET_REF' });
      }
      secret = v;
      registerSecret(secret);
    }
    return encodeURIComponent(secret);
  });
}

/**
 * The first of `names` set in `env`, looking at `NAME` then `NAME_FILE`,
 * with secret references (`${file:…}`, `${env:…}`) resolved. Giving both
 * forms of one name is refused as ambiguous.
 */
export function settingFromEnv(env: Env, names: readonly string[]): string | undefined {
  for (const name of names) {
    const direct = env[name];
    const file = env[`${name}_FILE`];
    if (direct !== undefined && direct !== '' && file) {
      throw new ConfigError(`both ${name} and ${name}_FILE are set`, { hint: `unset one of them` });
    }
    if (file) {
      const value = resolveSecretRefs(readSecretFile(file, `${name}_FILE`), env);
      // The file's whole text is registered; its password on its own too, for text that quotes only that.
      registerSecret(passwordOf(value));
      return value;
    }
    if (direct !== undefined && direct !== '') {
      const value = resolveSecretRefs(direct, env);
      registerSecret(passwordOf(value));
      return value;
    }
  }
  return undefined;
}

function passwordOf(url: string): string | undefined {
  const m = /^[a-z][a-z0-9+.-]*:\/\/[^/@:]*:([^/]*)@/i.exec(url);
  if (!m?.[1]) return undefined;
  try {
    return decodeURIComponent(m[1]);
  } catch {
    return m[1];
  }
}

/** A setting that can be re-read when secrets are rotated (SIGHUP). */
export interface CredentialSource {
  /** The variable names consulted, in order. */
  readonly names: readonly string[];
  /** The value read last. */
  current(): string;
  /**
   * Re-read the environment and secret files. On error the current value
   * is kept and the `ConfigError` is thrown, so a half-written secret file
   * during rotation never replaces a working credential.
   */
  reload(): { changed: boolean };
}

/**
 * A reloadable setting read with {@link settingFromEnv} (so `NAME`,
 * `NAME_FILE` and secret references all work). Typical use: build a
 * source for `BROKER_URL_VARS`, call `reload()` on SIGHUP and reconnect
 * when `changed` is true. Throws when none of the names is set.
 */
export function createCredentialSource(names: readonly string[], env: Env = process.env): CredentialSource {
  const read = (): string => {
    const v = settingFromEnv(env, names);
    if (v === undefined) {
      throw new ConfigError(`none of ${names.join(', ')} is set`, { hint: `set ${names[0] ?? 'the variable'} or ${names[0] ?? 'it'}_FILE`, code: 'ERR_SECRET_MISSING' });
    }
    return v;
  };
  let value = read();
  return {
    names: [...names],
    current: () => value,
    reload: () => {
      const next = read();
      const changed = next !== value;
      value = next;
      return { changed };
    },
  };
}

/** Broker URL variable names, in order of precedence. */
export const BROKER_URL_VARS = ['CELERIAC_BROKER_URL', 'CELERY_BROKER_URL'] as const;
/** Result backend URL variable names, in order of precedence. */
export const RESULT_BACKEND_VARS = ['CELERIAC_RESULT_BACKEND', 'CELERY_RESULT_BACKEND'] as const;

/** Variable names that hold secrets whatever their value looks like. */
const SECRET_ENV_NAME = /^(?:CELERIAC|CELERY)_(?:BROKER_URL|RESULT_BACKEND|SIGNING_KEYS|RESULT_KEYS|SECURITY_KEY|SECURITY_KEY_PASSWORD)$|PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIAL/i;

/**
 * Split an environment into the variables a child process may see in its
 * environment block and those it must get another way (issue 20 #11): any
 * variable whose name says it is a secret, whose value carries URL
 * credentials, or whose value is a registered secret. `*_FILE` variables
 * name files, not secrets, and stay. A child's `/proc/<pid>/environ` shows
 * only the block it was started with; values set into `process.env` later
 * do not appear there.
 */
export function splitSecretEnv(env: Env): { plain: Record<string, string>; secret: Record<string, string> } {
  const plain: Record<string, string> = {};
  const secret: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) {
    if (value === undefined) continue;
    const isSecret = !name.endsWith('_FILE') && (SECRET_ENV_NAME.test(name) || redactText(value) !== value || redactAll(value) !== value);
    (isSecret ? secret : plain)[name] = value;
  }
  return { plain, secret };
}
