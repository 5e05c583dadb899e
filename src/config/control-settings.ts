/**
 * Remote-control security settings (issue #16 item 4): which pidbox
 * commands a worker obeys, which of them it obeys without a signature, and
 * where it writes its control audit log. Pure: read by the start-up policy
 * (`policy.ts`, rule CEL-022), by `celeriac audit` through the same policy,
 * and by the worker's control guard (`security/control-guard.ts`).
 *
 * | setting | environment | default |
 * | --- | --- | --- |
 * | `workerControlAllow` | `CELERIAC_WORKER_CONTROL_ALLOW` | the read-only inspect commands ({@link CONTROL_READ_ONLY_COMMANDS}) |
 * | `workerControlAllowUnsigned` | `CELERIAC_WORKER_CONTROL_ALLOW_UNSIGNED` | the read-only inspect commands |
 * | `workerControlAuditLog` | `CELERIAC_WORKER_CONTROL_AUDIT_LOG` | unset: audit lines go to the worker's log (stderr) only |
 *
 * Lists are JSON arrays or names separated by commas or spaces; `@inspect`
 * stands for every read-only command, `@control` for every destructive one
 * Celeriac knows, `@all` for both. A name Celeriac does not know (a custom
 * command) counts as destructive.
 */
import { ConfigError } from '../errors.ts';
import type { Env } from './env.ts';

/** Commands that only read a worker's state (information disclosure at worst). */
export const CONTROL_READ_ONLY_COMMANDS = Object.freeze([
  'ping', 'stats', 'active', 'reserved', 'scheduled', 'registered', 'revoked', 'active_queues', 'query_task', 'conf', 'report', 'clock', 'hello',
  'dump_tasks', 'dump_active', 'dump_reserved', 'dump_schedule', 'dump_revoked', 'dump_conf', 'objgraph', 'memsample', 'memdump',
  // celeriac beat's schedule and lease (src/beat/control.ts)
  'beat_status',
] as const);

/** Commands that change what a worker does (revoke, stop, reconfigure); opt-in per deployment. */
export const CONTROL_DESTRUCTIVE_COMMANDS = Object.freeze([
  'revoke', 'revoke_by_stamped_headers', 'terminate', 'shutdown', 'rate_limit', 'time_limit', 'pool_grow', 'pool_shrink', 'pool_restart', 'autoscale',
  'add_consumer', 'cancel_consumer', 'enable_events', 'disable_events', 'heartbeat', 'election',
] as const);

const READ_ONLY: ReadonlySet<string> = new Set(CONTROL_READ_ONLY_COMMANDS);

/** True for a command that only reads state; unknown (custom) commands are not. */
export function isReadOnlyControlCommand(method: string): boolean {
  return READ_ONLY.has(method);
}

/** The control settings as the app settings hold them (the `security` section, or the audit's raw settings). */
export interface ControlSettingsSource {
  workerControlAllow?: readonly string[] | null | undefined;
  workerControlAllowUnsigned?: readonly string[] | null | undefined;
  workerControlAuditLog?: string | null | undefined;
}

/** Resolved control settings. */
export interface ControlSettings {
  /** Commands this worker obeys (signed, or unsigned when also in `allowUnsigned`). */
  allow: ReadonlySet<string>;
  /** Commands obeyed without a signature (only meaningful where signatures are verified; see docs/control-security.md). */
  allowUnsigned: ReadonlySet<string>;
  /** Append-only JSON-lines audit file, or undefined: audit lines go to the worker's log only. */
  auditLog: string | undefined;
}

const NAME_RE = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;

function expand(names: readonly string[], setting: string): Set<string> {
  const out = new Set<string>();
  for (const raw of names) {
    const n = raw.trim();
    if (n === '') continue;
    if (n === '@inspect' || n === '@all') for (const c of CONTROL_READ_ONLY_COMMANDS) out.add(c);
    if (n === '@control' || n === '@all') for (const c of CONTROL_DESTRUCTIVE_COMMANDS) out.add(c);
    if (n.startsWith('@')) {
      if (!['@inspect', '@control', '@all'].includes(n)) throw new ConfigError(`${setting}: unknown group ${JSON.stringify(n.slice(0, 40))}`, { hint: 'use @inspect, @control or @all, or command names' });
      continue;
    }
    if (!NAME_RE.test(n)) throw new ConfigError(`${setting}: ${JSON.stringify(n.slice(0, 40))} is not a command name`, { hint: 'list command names such as ping, stats, revoke' });
    out.add(n);
  }
  return out;
}

/** A list from the environment: a JSON array, or names separated by commas or white space. */
function envList(value: string, name: string): string[] {
  const v = value.trim();
  if (v.startsWith('[')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(v);
    } catch {
      throw new ConfigError(`${name} is not a JSON list`, { hint: 'write ["ping","stats"] or ping,stats' });
    }
    if (!Array.isArray(parsed) || !parsed.every((x) => typeof x === 'string')) throw new ConfigError(`${name} must be a list of command names`, { hint: 'write ["ping","stats"] or ping,stats' });
    return parsed as string[];
  }
  return v.split(/[\s,]+/);
}

/** Resolve the control settings: explicit settings win over `CELERIAC_WORKER_CONTROL_*` variables. Throws `ConfigError` for an unreadable list. */
export function resolveControlSettings(source: ControlSettingsSource, env: Env = {}): ControlSettings {
  const list = (value: readonly string[] | null | undefined, setting: string, envName: string): Set<string> => {
    if (value !== undefined && value !== null) return expand(value, setting);
    const e = env[envName];
    if (e !== undefined) return expand(envList(e, envName), envName);
    return new Set(CONTROL_READ_ONLY_COMMANDS);
  };
  const log = source.workerControlAuditLog ?? env.CELERIAC_WORKER_CONTROL_AUDIT_LOG;
  return {
    allow: list(source.workerControlAllow, 'workerControlAllow', 'CELERIAC_WORKER_CONTROL_ALLOW'),
    allowUnsigned: list(source.workerControlAllowUnsigned, 'workerControlAllowUnsigned', 'CELERIAC_WORKER_CONTROL_ALLOW_UNSIGNED'),
    auditLog: log === undefined || log === null || log === '' ? undefined : log,
  };
}

/**
 * Whether message signatures are verified by this deployment's workers,
 * judged from the settings without loading a key: `taskSerializer: 'auth'`,
 * a signing or verify ring, or a certificate (store). Mirrors the
 * "verifying" rule of `security/message-security.ts`.
 */
export function signingConfigured(settings: Readonly<Record<string, unknown>>, env: Env = {}): boolean {
  const set = (k: string): boolean => settings[k] !== undefined && settings[k] !== null && settings[k] !== '';
  const envSet = (...names: string[]): boolean => names.some((n) => !!env[n] || !!env[`${n}_FILE`]);
  return settings.taskSerializer === 'auth'
    || set('securitySigningKeys') || set('securityVerifyKeys') || set('securityCertStore') || set('securityCertificate')
    || envSet('CELERIAC_SIGNING_KEYS', 'CELERIAC_VERIFY_KEYS', 'CELERIAC_SECURITY_CERT_STORE', 'CELERIAC_SECURITY_CERTIFICATE')
    || !!env.CELERY_SECURITY_CERT_STORE || !!env.CELERY_SECURITY_CERTIFICATE;
}

/** What the policy needs to judge remote control (CEL-022). */
export interface ControlPolicyInput {
  /** Workers verify signatures (then unsigned commands pass only when listed in `allowUnsigned`). */
  signing: boolean;
  allow: readonly string[];
  allowUnsigned: readonly string[];
}

/** The policy input from settings (the `security` section, or the audit's normalized settings) and the environment. */
export function controlPolicyInput(settings: Readonly<Record<string, unknown>>, env: Env = {}): ControlPolicyInput {
  const c = resolveControlSettings(settings as ControlSettingsSource, env);
  return { signing: signingConfigured(settings, env), allow: [...c.allow], allowUnsigned: [...c.allowUnsigned] };
}

/**
 * The destructive commands a worker would obey without a signature: those
 * allowed and listed unsigned, or — where nothing verifies — every allowed
 * one (nothing can be signed then).
 */
export function unsignedDestructiveCommands(input: ControlPolicyInput): string[] {
  const allowed = new Set(input.allow);
  const unsigned = input.signing ? input.allowUnsigned.filter((m) => allowed.has(m)) : [...allowed];
  return [...new Set(unsigned)].filter((m) => !isReadOnlyControlCommand(m)).sort();
}
