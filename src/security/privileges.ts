/**
 * CEL-020: the worker does not run task code as root (issue 20 #8).
 *
 * `celeriac worker` started by root in production is refused unless it is
 * told whom to become (`--uid`, `--gid`: names or numbers), in which case
 * it drops to that user and group before it loads the app module (so no
 * task code, import side effect or prefork child ever runs as root), or
 * unless `CELERIAC_UNSAFE_ALLOW_ROOT=1` accepts the risk (warned at every
 * start). In development, root without `--uid` is a warning.
 *
 * `evaluateProcessIdentity` is pure (the policy's shape: findings with id
 * and fix) so `celeriac audit` can share it; `dropPrivileges` acts.
 */
import { readFileSync } from 'node:fs';
import type { Env } from '../config/env.ts';
import { resolveSecurityMode, type SecurityMode } from '../config/mode.ts';
import { resolveSettings } from '../config/options.ts';
import { evaluatePolicy, InsecureConfigError, policyInputFromSettings, type Finding, type PolicyReport } from '../config/policy.ts';
import { ConfigError } from '../errors.ts';

/** Environment variable that accepts running as root in production. */
export const ALLOW_ROOT_VAR = 'CELERIAC_UNSAFE_ALLOW_ROOT';

/** What the identity rule looks at. */
export interface IdentityInput {
  mode: SecurityMode;
  /** Effective uid of this process (`undefined` where the platform has none). */
  euid: number | undefined;
  /** `--uid` was given (the process will drop to it before loading the app). */
  dropTo: boolean;
  /** `CELERIAC_UNSAFE_ALLOW_ROOT` is set. */
  allowRoot: boolean;
}

/** The CEL-020 finding for this process, as a policy report. */
export function evaluateProcessIdentity(input: IdentityInput): PolicyReport {
  const report: PolicyReport = { refusals: [], warnings: [] };
  const root = input.euid === 0;
  const finding: Finding = {
    id: 'CEL-020',
    setting: '--uid',
    message: 'the worker runs as root: any task, or any package the app imports, would run with full control of this machine',
    fix: `start it as an unprivileged user, or pass --uid USER (and --gid GROUP) so it drops to that user before loading the app module — or set ${ALLOW_ROOT_VAR}=1 to accept the risk`,
  };
  if (root && !input.dropTo) {
    if (input.allowRoot) report.warnings.push({ ...finding, message: `${finding.message} (accepted by ${ALLOW_ROOT_VAR})` });
    else if (input.mode === 'production') report.refusals.push(finding);
    else report.warnings.push({ ...finding, message: `${finding.message} (allowed in development; refused in production)` });
  } else if (input.allowRoot && !root) {
    report.warnings.push({ id: 'CEL-020', setting: ALLOW_ROOT_VAR, message: `${ALLOW_ROOT_VAR} is set but the worker does not run as root`, fix: `remove ${ALLOW_ROOT_VAR}` });
  }
  return report;
}

/** One entry of /etc/passwd or /etc/group: name and numeric id (and the user's primary group). */
interface DbEntry {
  name: string;
  id: number;
  gid?: number;
}

function readDb(path: string, withGid: boolean): DbEntry[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return [];
  }
  const out: DbEntry[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f.length < 3 || !/^\d+$/.test(f[2]!)) continue;
    out.push({ name: f[0]!, id: Number(f[2]), ...(withGid && /^\d+$/.test(f[3] ?? '') ? { gid: Number(f[3]) } : {}) });
  }
  return out;
}

/** Resolve `--uid`/`--gid` (names or numbers) to numbers; the group defaults to the user's primary group. */
export function resolveIdentity(uidSpec: string, gidSpec: string | undefined): { uid: number; gid: number } {
  const users = readDb('/etc/passwd', true);
  const user = /^\d+$/.test(uidSpec) ? users.find((u) => u.id === Number(uidSpec)) ?? { name: uidSpec, id: Number(uidSpec) } : users.find((u) => u.name === uidSpec);
  if (!user) throw new ConfigError(`--uid ${JSON.stringify(uidSpec)}: no such user`, { hint: 'give a user name from /etc/passwd or a numeric uid' });
  let gid: number | undefined;
  if (gidSpec !== undefined) {
    const group = /^\d+$/.test(gidSpec) ? { id: Number(gidSpec) } : readDb('/etc/group', false).find((g) => g.name === gidSpec);
    if (!group) throw new ConfigError(`--gid ${JSON.stringify(gidSpec)}: no such group`, { hint: 'give a group name from /etc/group or a numeric gid' });
    gid = group.id;
  } else gid = user.gid;
  if (gid === undefined) throw new ConfigError(`--uid ${uidSpec} is not in /etc/passwd, so its group is unknown`, { hint: 'pass --gid as well' });
  if (user.id === 0 || gid === 0) throw new ConfigError('--uid/--gid name root: that drops nothing', { hint: 'name an unprivileged user and group' });
  return { uid: user.id, gid };
}

/**
 * Become `uid`/`gid` for good: supplementary groups, group, then user; then
 * check that root cannot be regained. Throws `ConfigError` when this process
 * may not change its identity (not root) or the change does not hold.
 */
export function dropPrivileges(uid: number, gid: number): void {
  if (typeof process.setuid !== 'function' || typeof process.setgid !== 'function') {
    throw new ConfigError('--uid/--gid are not supported on this platform');
  }
  if (process.geteuid?.() === uid && process.getegid?.() === gid) return;
  try {
    process.setgroups?.([gid]);
    process.setgid(gid);
    process.setuid(uid);
  } catch (err) {
    throw new ConfigError(`cannot switch to uid ${uid}, gid ${gid}: ${(err as Error).message}`, { hint: 'only root can change user; start the worker as root with --uid, or as the user itself without it' });
  }
  let regained = false;
  try {
    process.setuid(0);
    regained = true;
  } catch {
    // expected: root is gone
  }
  if (regained || process.geteuid?.() !== uid || process.getegid?.() !== gid) {
    throw new ConfigError(`the switch to uid ${uid}, gid ${gid} did not hold`, { hint: 'refusing to run task code with root privileges' });
  }
}

/**
 * The worker command's identity step, before the app module is loaded:
 * refuse (with every refusal the environment's settings already show, so
 * one start lists them all), pass each warning to `warn` (the caller logs it
 * as a policy warning), or drop to `--uid/--gid`.
 */
export function enforceWorkerIdentity(uidSpec: string | undefined, gidSpec: string | undefined, env: Env, warn: (finding: Finding) => void): void {
  if (gidSpec !== undefined && uidSpec === undefined) throw new ConfigError('--gid needs --uid', { hint: 'pass --uid USER as well (the group defaults to its primary group)' });
  const mode = resolveSecurityMode(env).mode;
  const report = evaluateProcessIdentity({ mode, euid: process.geteuid?.(), dropTo: uidSpec !== undefined, allowRoot: /^(1|true|yes|on)$/i.test(env[ALLOW_ROOT_VAR] ?? '') });
  if (report.refusals.length > 0) {
    let others: Finding[] = [];
    try {
      others = evaluatePolicy(policyInputFromSettings(resolveSettings({}), env)).refusals;
    } catch {
      // A setting that cannot even be parsed is reported when the app loads.
    }
    throw new InsecureConfigError([...report.refusals, ...others]);
  }
  for (const w of report.warnings) warn(w);
  if (uidSpec !== undefined) {
    const { uid, gid } = resolveIdentity(uidSpec, gidSpec);
    dropPrivileges(uid, gid);
  }
}
