/**
 * The configuration as Celery's `inspect conf` answers it: one flat object
 * keyed by Celery's lower-case setting names (`broker_url`,
 * `task_serializer`, …) for every setting Celery has too, Celeriac's own
 * settings under their camelCase names, and no secret in it.
 *
 * Secrets are hidden twice: every value goes through `redactValue` (URL
 * passwords, secret-named keys, registered secret values), and a key that
 * Celery hides (its `HIDDEN_SETTINGS`: API, TOKEN, KEY, SECRET, PASS,
 * SIGNATURE, DATABASE anywhere in the name) is masked whole, at any depth,
 * as Celery's `filter_hidden_settings` does. Pure: used by the worker's and
 * beat's `conf` command.
 */
import { flattenSettings, resolveSettings, type ResolvedSettings } from './options.ts';
import { redactValue } from './redact.ts';
import { snakeCaseKey } from './schema.ts';

/**
 * Our settings that are Celery settings too, by camelCase name: those of
 * Celery 5.2.6's `celery.app.defaults`, plus `securityKeyPassword` and
 * `taskDefaultQueueType` (Celery 5.5) and `brokerConnectionRetryOnStartup`
 * (Celery 5.3). The others (`taskMaxRedeliveries`, the signing rings, the
 * control allow-lists, the policy's opt-outs, …) are Celeriac's own.
 */
export const CELERY_SETTINGS: ReadonlySet<string> = new Set([
  'brokerUrl', 'resultBackend', 'taskSerializer', 'resultSerializer', 'acceptContent', 'resultAcceptContent', 'resultExpires', 'resultExtended',
  'taskDefaultQueue', 'taskAcksLate', 'taskRejectOnWorkerLost', 'taskTrackStarted', 'taskIgnoreResult', 'taskStoreErrorsEvenIfIgnored',
  'taskTimeLimit', 'taskSoftTimeLimit', 'taskRoutes', 'brokerTransportOptions', 'resultBackendTransportOptions', 'workerSendTaskEvents',
  'taskSendSentEvent', 'eventExchange', 'securityKey', 'securityCertificate', 'securityCertStore', 'securityDigest', 'taskQueueMaxPriority',
  'brokerConnectionTimeout', 'brokerConnectionRetry', 'brokerConnectionMaxRetries', 'brokerHeartbeat', 'brokerUseSsl', 'redisBackendUseSsl',
  'securityKeyPassword', 'taskDefaultQueueType', 'brokerConnectionRetryOnStartup',
]);

/** kombu's own transport options among ours (`visibility_timeout`, …): snake_case inside the transport options, as Python writes them. */
const KOMBU_TRANSPORT_OPTIONS: ReadonlySet<string> = new Set(['visibilityTimeout', 'globalKeyprefix', 'masterName', 'sentinelKwargs', 'unackedKey', 'unackedIndexKey', 'unackedMutexKey']);

/** Celery's `HIDDEN_SETTINGS`: a key matching it is never shown. */
export const CELERY_HIDDEN_SETTING_RE = /API|TOKEN|KEY|SECRET|PASS|SIGNATURE|DATABASE/i;

/** Celery's mask of a hidden setting. */
const HIDDEN = '********';

/** The name `inspect conf` shows for a setting: Celery's, or ours when Celery has none. */
export function celeryConfName(setting: string): string {
  return CELERY_SETTINGS.has(setting) ? snakeCaseKey(setting) : setting;
}

/** A JSON value: key objects, certificates, rings and stores become `<ClassName>` (Celery's `safe_repr` of what JSON cannot hold). */
function jsonable(v: unknown, depth = 0): unknown {
  if (v === undefined) return null;
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return v;
  if (typeof v === 'number') return Number.isFinite(v) ? v : String(v);
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'function') return '<function>';
  if (typeof v !== 'object' || depth > 8) return `<${typeof v}>`;
  if (Buffer.isBuffer(v) || v instanceof Uint8Array) return `<${v.length} bytes>`;
  if (Array.isArray(v)) return v.map((x) => jsonable(x, depth + 1));
  const proto = Object.getPrototypeOf(v) as object | null;
  if (proto !== null && proto !== Object.prototype) return `<${(v as { constructor?: { name?: string } }).constructor?.name || 'object'}>`;
  return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, jsonable(x, depth + 1)]));
}

/** Mask every key Celery hides, at any depth (as `filter_hidden_settings`). */
function hideSecrets(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(hideSecrets);
  if (v === null || typeof v !== 'object') return v;
  return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, CELERY_HIDDEN_SETTING_RE.test(k) && x !== null ? HIDDEN : hideSecrets(x)]));
}

function sameValue(a: unknown, b: unknown): boolean {
  return JSON.stringify(jsonable(a)) === JSON.stringify(jsonable(b));
}

/** The `with_defaults` argument of a `conf` request: Celery's CLI sends a boolean, other clients may send text (Celery's `strtobool`). */
export function withDefaultsArgument(args: Readonly<Record<string, unknown>>): boolean {
  const v = args.with_defaults;
  return v === true || v === 1 || (typeof v === 'string' && /^(1|true|yes|on|y|t)$/i.test(v));
}

let defaultsCache: Record<string, unknown> | undefined;

/**
 * `inspect conf`'s reply for `settings` (an app's resolved settings, or a
 * redacted copy of them). Without `withDefaults` only the settings whose
 * value differs from the default are listed (Celery lists those changed
 * from its defaults); with it, every setting that has a value.
 */
export function celeryConfTable(settings: Readonly<ResolvedSettings> | Readonly<Record<string, unknown>>, options: { withDefaults?: boolean } = {}): Record<string, unknown> {
  const flat = flattenSettings(settings as ResolvedSettings);
  const defaults = (defaultsCache ??= flattenSettings(resolveSettings({})));
  const out: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(flat)) {
    if (!options.withDefaults && Object.hasOwn(defaults, name) && sameValue(value, defaults[name])) continue;
    let v = redactValue(jsonable(value));
    if ((name === 'brokerTransportOptions' || name === 'resultBackendTransportOptions') && v && typeof v === 'object' && !Array.isArray(v)) {
      v = Object.fromEntries(Object.entries(v).map(([k, x]) => [KOMBU_TRANSPORT_OPTIONS.has(k) ? snakeCaseKey(k) : k, x]));
    }
    const key = celeryConfName(name);
    out[key] = CELERY_HIDDEN_SETTING_RE.test(key) && v !== null ? HIDDEN : hideSecrets(v);
  }
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}
