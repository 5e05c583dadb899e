/**
 * The one settings schema (zod): every setting Celeriac reads, in typed
 * sections. `parseSettings` normalizes the spelling (camelCase, Celery's
 * snake_case, old `CELERY_*` upper case), refuses unknown keys with a
 * "did you mean" suggestion, and checks each value's type, so that a
 * misspelled or mistyped setting fails at `createApp` instead of being
 * ignored. Ranges and cross-setting rules stay with the module that owns
 * the setting (security-settings.ts, the AMQP options, …), which now reads
 * typed values.
 *
 * The TSDoc of each setting lives on `AppSettings` (options.ts); a
 * compile-time check there keeps the interface and this schema equal.
 */
import type { KeyObject } from 'node:crypto';
import { X509Certificate } from 'node:crypto';
import { z } from 'zod';
import { ConfigError } from '../errors.ts';
import type { ResultKeyRing } from '../codec/encryption.ts';
import { CertStore, SigningKeyRing } from '../codec/signing/index.ts';
import type { ReplayStore } from '../core/replay-store.ts';

/** A send rate limit: Celery's rate string, a number per second, or the long form. */
export type SendRateLimit =
  | string
  | number
  | {
      /** Celery's format: `'100/s'`, `'6000/m'`, `'10/h'`, or a number per second. */
      rate: string | number;
      /** Bucket capacity: sends allowed at once after a pause (default one second's worth, at least 1). */
      burst?: number;
      /** Share the bucket through Redis with every process using this name. */
      shared?: string;
    };

/** Where replay state lives: chosen from the broker/backend (`auto`), forced, or injected. */
export type ReplayStoreSetting = 'auto' | 'redis' | 'sqlite' | 'postgres' | 'local' | 'memory' | ReplayStore;

/** `true`, or an object of TLS settings (keys checked by src/config/tls.ts, which refuses unknown ones). */
export type UseSslSetting = boolean | Readonly<Record<string, unknown>>;

/** One setting: its schema and what a correct value looks like (for the error message). */
export interface Field<S extends z.ZodType = z.ZodType> {
  schema: S;
  expect: string;
}

const field = <S extends z.ZodType>(schema: S, expect: string): Field<S> => ({ schema, expect });
const bool = () => field(z.boolean(), 'true or false');
const seconds = () => field(z.number().finite().min(0), 'a number of seconds ≥ 0');
const count = () => field(z.number().finite().min(0), 'a number ≥ 0');
const text = () => field(z.string(), 'a string');
const strings = (what: string) => field(z.array(z.string()), what);

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null;
const isPlainObject = (v: unknown): boolean => isObject(v) && !Array.isArray(v);

// ── nested sections ────────────────────────────────────────────────────

// ── High availability (issue 22): Redis Sentinel and waiting for replicas ──
/**
 * Transport options of a Redis broker or backend behind Sentinel, in
 * `brokerTransportOptions` and `resultBackendTransportOptions` (checked by
 * src/config/ha-settings.ts): kombu's and Celery's `master_name` and
 * `sentinel_kwargs`, plus Celeriac's safe mode `wait_for_replicas`; and
 * RabbitMQ quorum queues' `delivery_limit` (checked by transport/amqp/options.ts).
 */
export const HA_TRANSPORT_FIELDS = {
  masterName: text(),
  sentinelKwargs: field(z.custom<object>(isPlainObject), 'an object of sentinel connection options ({ username, password })'),
  waitForReplicas: count(),
  waitForReplicasTimeout: seconds(),
  deliveryLimit: count(),
} satisfies Record<string, Field>;

/** `brokerTransportOptions` (kombu's transport options). */
export const TRANSPORT_OPTION_FIELDS = {
  ...HA_TRANSPORT_FIELDS,
  visibilityTimeout: seconds(),
  globalKeyprefix: text(),
  maxQueueLength: count(),
  deadLetterMaxLength: count(),
  unackedKey: text(),
  unackedIndexKey: text(),
  unackedMutexKey: text(),
  reconnectDelayMs: count(),
  reconnectDelayMaxMs: count(),
} satisfies Record<string, Field>;

/** `decodeLimits` (see src/codec/limits.ts). */
export const DECODE_LIMIT_FIELDS = {
  maxBytes: count(),
  maxDepth: count(),
  maxItems: count(),
  bigIntegers: field(z.enum(['bigint', 'refuse']), "'bigint' or 'refuse'"),
  maxInflateRatio: count(),
} satisfies Record<string, Field>;

// Celery route dicts often carry `exchange` and `routing_key` too; they are
// accepted so a Celery config loads, and routing uses `queue` (the queue's
// own binding on RabbitMQ), as before.
const route = z.strictObject({
  queue: z.string().optional(),
  priority: z.number().finite().optional(),
  exchange: z.string().optional(),
  routing_key: z.string().optional(),
  routingKey: z.string().optional(),
});

// ── top-level sections ─────────────────────────────────────────────────

/** Connections, tasks and results: resolved into the flat fields of `ResolvedSettings`. */
export const CORE_FIELDS = {
  brokerUrl: text(),
  resultBackend: text(),
  taskSerializer: field(z.enum(['json', 'msgpack', 'auth']), 'json, msgpack or auth (pickle and yaml are refused because they can execute code)'),
  resultSerializer: field(z.enum(['json', 'msgpack']), 'json or msgpack'),
  acceptContent: strings('a list of content type names'),
  resultAcceptContent: strings('a list of content type names'),
  resultExpires: seconds(),
  resultExtended: bool(),
  taskDefaultQueue: text(),
  taskAcksLate: bool(),
  taskRejectOnWorkerLost: bool(),
  taskMaxRedeliveries: count(),
  // Broker-counted redeliveries (issue 21: RabbitMQ quorum queues' x-delivery-count).
  taskMaxDeliveryCount: count(),
  taskTrackStarted: bool(),
  taskIgnoreResult: bool(),
  taskStoreErrorsEvenIfIgnored: bool(),
  taskTimeLimit: seconds(),
  taskSoftTimeLimit: seconds(),
  taskDefaultRetryDelay: seconds(),
  taskMaxRetries: field(z.number().finite().min(0), 'a number ≥ 0 (null = unlimited)'),
  taskRoutes: field(z.record(z.string(), route), "an object of task name → { queue?, priority?, exchange?, routing_key? }, e.g. { 'tasks.add': { queue: 'math' } }"),
  // Checked field by field against TRANSPORT_OPTION_FIELDS / DECODE_LIMIT_FIELDS by parseSettings.
  brokerTransportOptions: field(z.custom<object>(isPlainObject), 'an object of transport options'),
  resultBackendTransportOptions: field(z.custom<object>(isPlainObject), 'an object of result backend transport options (master_name, sentinel_kwargs, wait_for_replicas)'),
  decodeLimits: field(z.custom<object>(isPlainObject), 'an object of decoding limits'),
  // Celery events (issue 16): task events from workers, task-sent from clients, the event exchange.
  workerSendTaskEvents: bool(),
  taskSendSentEvent: bool(),
  eventExchange: text(),
  // OpenTelemetry (src/observability/tracing): off by default; needs @opentelemetry/api installed when on.
  telemetryTracing: bool(),
} satisfies Record<string, Field>;

/** Message security: read by src/config/security-settings.ts. */
export const SECURITY_FIELDS = {
  securityKey: field(z.union([z.string(), z.custom<KeyObject>((v) => isObject(v) && v.type === 'private')]), 'a path or PEM text (or a private KeyObject)'),
  securityKeyPassword: text(),
  securityCertificate: field(z.union([z.string(), z.instanceof(X509Certificate)]), 'a path or PEM text (or an X509Certificate)'),
  securityCertStore: field(z.union([z.string(), z.instanceof(CertStore)]), 'a path (or a CertStore)'),
  securityDigest: text(),
  securityAuthLayout: field(z.enum(['celery-5.2', 'celery-5.5']), "'celery-5.2' or 'celery-5.5'"),
  securitySigningKeys: field(z.union([z.string(), z.instanceof(SigningKeyRing)]), 'the key ring text (or a SigningKeyRing)'),
  securityVerifyKeys: field(z.union([z.string(), z.instanceof(SigningKeyRing)]), 'the key ring text (or a SigningKeyRing)'),
  securityMessageTtl: seconds(),
  securityReplayWindow: seconds(),
  securityAcceptBodyOnlyFrom: strings('a list of signer ids'),
  securityReplayStore: field(
    z.union([z.enum(['auto', 'redis', 'sqlite', 'postgres', 'local', 'memory']), z.custom<ReplayStore>((v) => isObject(v) && typeof v.claim === 'function')]),
    'auto, redis, sqlite, postgres, local or memory (or a ReplayStore)',
  ),
  securityReplayFile: text(),
  unsafeAcceptUnsigned: bool(),
  resultEncryptionKeys: field(z.union([z.string(), z.custom<ResultKeyRing>((v) => isObject(v) && typeof v.current === 'function')]), 'the key ring text (or a ResultKeyRing)'),
  unsafeAcceptUnencryptedResults: bool(),
  // Remote-control security (issue #16 item 4; read by src/config/control-settings.ts, enforced by src/security/control-guard.ts).
  workerControlAllow: strings('a list of control command names (or @inspect, @control, @all)'),
  workerControlAllowUnsigned: strings('a list of control command names (or @inspect, @control, @all)'),
  workerControlAuditLog: text(),
} satisfies Record<string, Field>;

const rateLimit = z.union([
  z.string(),
  z.number().finite(),
  z.strictObject({ rate: z.union([z.string(), z.number().finite()]), burst: z.number().finite().optional(), shared: z.string().optional() }),
]);

/** Submission limits: read by src/client/submission-limits.ts. */
export const LIMIT_FIELDS = {
  sendRateLimit: field(rateLimit, "a rate such as '100/s', or { rate, burst?, shared? }"),
  sendRateLimitWait: field(z.union([z.boolean(), z.number().finite().min(0)]), 'true, false or a number of ms'),
  maxQueueLength: field(z.union([z.number().finite().min(0), z.record(z.string(), z.number().finite().min(0))]), "a number, or { queue: n, '*': default }"),
} satisfies Record<string, Field>;

/** Broker connection (AMQP options and the worker's start-up retry). */
export const CONNECTION_FIELDS = {
  taskQueueMaxPriority: count(),
  taskDefaultQueueType: field(z.enum(['classic', 'quorum']), "'classic' or 'quorum'"),
  brokerConnectionTimeout: seconds(),
  brokerConnectionRetry: bool(),
  brokerConnectionMaxRetries: field(z.number().finite().min(0), 'a number ≥ 0 (null = unlimited)'),
  brokerConnectionRetryOnStartup: bool(),
  brokerHeartbeat: seconds(),
  brokerPublishTimeout: seconds(),
} satisfies Record<string, Field>;

const useSsl = field(z.union([z.boolean(), z.record(z.string(), z.unknown())]), 'true, false or an object of TLS settings');

/** TLS of broker and backend connections (checked by src/config/tls.ts). */
export const TLS_FIELDS = { brokerUseSsl: useSsl, redisBackendUseSsl: useSsl } satisfies Record<string, Field>;

/** The policy's explicit opt-outs (src/config/policy.ts). */
export const UNSAFE_FIELDS = {
  unsafeAllowPlaintext: bool(),
  unsafeAllowInsecureTls: bool(),
  unsafeAllowNoCredentials: bool(),
  unsafeAllowDefaultCredentials: bool(),
  unsafeAllowWeakCredentials: bool(),
  unsafeAllowContent: bool(),
  unsafeAllowUnsignedControl: bool(),
} satisfies Record<string, Field>;

/** Every top-level setting, by section. */
export const SECTIONS = {
  core: CORE_FIELDS,
  security: SECURITY_FIELDS,
  limits: LIMIT_FIELDS,
  connection: CONNECTION_FIELDS,
  tls: TLS_FIELDS,
  unsafe: UNSAFE_FIELDS,
} as const;

/** The field tables of every section. */
export type Sections = typeof SECTIONS;
/** The name of a section. */
export type SectionName = keyof Sections;

const ALL_FIELDS: Readonly<Record<string, Field>> = Object.assign({}, ...Object.values(SECTIONS)) as Record<string, Field>;

/** Every setting's camelCase name. */
export const SETTING_NAMES: readonly string[] = Object.keys(ALL_FIELDS);

/** A zod strict object over some fields; every value may also be null (Celery's None: not set). */
function objectOf<F extends Record<string, Field>>(fields: F) {
  const shape: Record<string, z.ZodType> = {};
  for (const [k, f] of Object.entries(fields)) shape[k] = f.schema.nullish();
  return z.strictObject(shape);
}

/** The schema of the whole (normalized) settings object. */
export const settingsSchema = objectOf(ALL_FIELDS);
const transportSchema = objectOf(TRANSPORT_OPTION_FIELDS);
const decodeLimitsSchema = objectOf(DECODE_LIMIT_FIELDS);

// ── spelling ───────────────────────────────────────────────────────────

/** snake_case → camelCase, plus Celery's old uppercase names (`CELERY_` dropped). */
export function camelCaseKey(key: string): string {
  let k = key;
  if (/^[A-Z0-9_]+$/.test(k)) {
    k = k.toLowerCase();
    if (k.startsWith('celery_')) k = k.slice('celery_'.length);
  }
  return k.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
}

/** Old Celery names whose camelCase form differs from ours. */
const ALIASES: Record<string, string> = {
  broker: 'brokerUrl',
  backend: 'resultBackend',
  taskResultExpires: 'resultExpires',
};

/** Celery's pre-4.0 upper-case names that are not `CELERY_` + the new name (camelCased after `CELERY_` is dropped). */
const UPPER_ALIASES: Record<string, string> = {
  routes: 'taskRoutes',
  defaultQueue: 'taskDefaultQueue',
  acksLate: 'taskAcksLate',
  trackStarted: 'taskTrackStarted',
  ignoreResult: 'taskIgnoreResult',
  storeErrorsEvenIfIgnored: 'taskStoreErrorsEvenIfIgnored',
  celerydTaskTimeLimit: 'taskTimeLimit',
  celerydTaskSoftTimeLimit: 'taskSoftTimeLimit',
  queueMaxPriority: 'taskQueueMaxPriority',
};

/** The canonical (camelCase) name of a key as given. */
export function canonicalKey(rawKey: string): string {
  const key = camelCaseKey(rawKey);
  if (/^[A-Z0-9_]+$/.test(rawKey) && UPPER_ALIASES[key]) return UPPER_ALIASES[key];
  return ALIASES[key] ?? key;
}

/** camelCase → Celery's snake_case (`taskAcksLate` → `task_acks_late`); the inverse of {@link camelCaseKey} for our names. */
export function snakeCaseKey(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/** A known name written the way the user wrote theirs: camelCase, snake_case or upper case. */
function spelledLike(rawKey: string, name: string): string {
  const snake = snakeCaseKey(name);
  if (/^[A-Z0-9_]+$/.test(rawKey)) return `${rawKey.startsWith('CELERY_') ? 'CELERY_' : ''}${snake.toUpperCase()}`;
  if (rawKey.includes('_')) return snake;
  return name;
}

/** Edit distance (insertions, deletions, substitutions, adjacent swaps). */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

/** The known name closest to `rawKey`, spelled like it, when one is close enough to be a typo. */
export function suggestSetting(rawKey: string, known: readonly string[]): string | undefined {
  const target = camelCaseKey(rawKey).toLowerCase();
  let best: { name: string; d: number } | undefined;
  for (const name of known) {
    const d = editDistance(target, name.toLowerCase());
    if (!best || d < best.d) best = { name, d };
  }
  if (!best || best.d > Math.max(2, Math.floor(target.length / 4))) return undefined;
  return spelledLike(rawKey, best.name);
}

// ── errors ─────────────────────────────────────────────────────────────

/** A setting that does not exist, or whose value has the wrong type. */
export class SettingError extends ConfigError {
  /** The setting as given (`task_serialiser`, `brokerTransportOptions.visibility_timout`). */
  readonly setting: string;
  /** For an unknown setting: the known one it most likely means. */
  readonly suggestion: string | undefined;
  constructor(kind: 'unknown' | 'type', setting: string, message: string, options: { hint: string; suggestion?: string | undefined }) {
    super(message, { hint: options.hint, code: kind === 'unknown' ? 'ERR_UNKNOWN_SETTING' : 'ERR_SETTING_TYPE' });
    this.setting = setting;
    this.suggestion = options.suggestion;
  }
}

function unknownSetting(rawKey: string, where: string, known: readonly string[]): SettingError {
  const suggestion = suggestSetting(rawKey, known);
  const name = where ? `${where}.${rawKey}` : rawKey;
  return new SettingError('unknown', name, `unknown setting ${JSON.stringify(name)}${suggestion ? `; did you mean ${JSON.stringify(suggestion)}?` : ''}`, {
    suggestion,
    hint: suggestion
      ? `rename it to ${suggestion}; unknown settings are refused so that a typo is not silently ignored`
      : `remove it, or see docs/reference/settings.md for the settings Celeriac knows${where ? ` (under ${where})` : ''}`,
  });
}

/** Settings whose string values are names, safe to repeat in an error (no other string is shown: it may be a secret). */
const NAMED_VALUES = new Set(['taskSerializer', 'resultSerializer', 'securityAuthLayout', 'securityReplayStore', 'taskDefaultQueueType', 'bigIntegers']);

/** A short description of a value: its type, and the value itself only when it cannot be a secret. */
function typeOf(v: unknown, key: string): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'string') return NAMED_VALUES.has(key) && v.length <= 40 ? `${JSON.stringify(v)}` : 'a string';
  if (typeof v === 'object') return 'an object';
  return `${typeof v === 'number' || typeof v === 'boolean' ? String(v) : `a ${typeof v}`}`;
}

/** Check `value` against a strict object schema; the first problem becomes a `SettingError` naming the setting. */
function check<T>(schema: z.ZodType<T>, value: Record<string, unknown>, fields: Readonly<Record<string, Field>>, where: string, spelled: (key: string) => string): T {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issue = r.error.issues[0]!;
  const key = String(issue.path[0] ?? '');
  const name = where ? `${where}.${spelled(key)}` : spelled(key);
  const f = Object.hasOwn(fields, key) ? fields[key] : undefined;
  const inner = issue.path.length > 1 ? ` (at ${issue.path.slice(1).map(String).join('.')}: ${issue.message})` : '';
  throw new SettingError('type', name, `setting ${name} must be ${f?.expect ?? 'valid'}, not ${typeOf(value[key], key)}${inner}`, {
    hint: 'see docs/reference/settings.md for its type and meaning',
  });
}

/**
 * Normalize a settings object: accept camelCase, snake_case and `CELERY_*`
 * keys, refuse two spellings of one setting with different values, drop
 * `undefined` values. Keys are not checked here (see `parseSettings`).
 */
export function normalizeSettings(input: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const given: Record<string, string> = {};
  for (const [rawKey, value] of Object.entries(input)) {
    if (value === undefined) continue;
    const key = canonicalKey(rawKey);
    if (Object.hasOwn(out, key) && out[key] !== value) {
      throw new ConfigError(`setting ${rawKey} conflicts with another spelling of the same setting (${given[key]})`, {
        hint: 'give each setting once, either camelCase or snake_case',
      });
    }
    given[key] = rawKey;
    // defineProperty: a `__proto__` key becomes an own (and then unknown) key, never the object's prototype.
    Object.defineProperty(out, key, {
      value: key === 'brokerTransportOptions' && isObject(value) ? normalizeSettings(value) : value,
      enumerable: true, writable: true, configurable: true,
    });
  }
  return out;
}

/**
 * Check a settings object against the schema: spelling normalized, unknown
 * keys refused (`SettingError` with a suggestion), every value's type
 * checked (`SettingError` naming the setting and the expected type).
 * Returns the normalized object (camelCase keys), with the nested
 * `brokerTransportOptions` and `decodeLimits` checked the same way.
 */
export function parseSettings(input: Readonly<Record<string, unknown>>): Record<string, unknown> {
  for (const [rawKey, v] of Object.entries(input)) {
    if (v !== undefined && !Object.hasOwn(ALL_FIELDS, canonicalKey(rawKey))) throw unknownSetting(rawKey, '', SETTING_NAMES);
  }
  const s = normalizeSettings(input);
  // Errors name a setting the way the user wrote it.
  const spelledTop = (key: string): string => Object.keys(input).find((k) => input[k] !== undefined && canonicalKey(k) === key) ?? key;
  const parsed = check(settingsSchema, s, ALL_FIELDS, '', spelledTop) as Record<string, unknown>;
  for (const [name, fields, schema] of [
    ['brokerTransportOptions', TRANSPORT_OPTION_FIELDS, transportSchema],
    ['decodeLimits', DECODE_LIMIT_FIELDS, decodeLimitsSchema],
  ] as const) {
    const v = parsed[name];
    if (!isObject(v)) continue;
    const names = Object.keys(fields);
    const nested = name === 'brokerTransportOptions' ? v : Object.fromEntries(Object.entries(v).filter(([, x]) => x !== undefined));
    for (const k of Object.keys(nested)) if (!Object.hasOwn(fields, k)) throw unknownSetting(findRaw(input, name, k), spelledTop(name), names);
    parsed[name] = check(schema, nested, fields, spelledTop(name), (k) => findRaw(input, name, k));
  }
  return parsed;
}

/** The key of a nested setting as the user wrote it (before normalization), for the error message. */
function findRaw(input: Readonly<Record<string, unknown>>, section: string, camel: string): string {
  for (const [rawKey, v] of Object.entries(input)) {
    if (canonicalKey(rawKey) !== section || !isObject(v)) continue;
    for (const k of Object.keys(v)) if (camelCaseKey(k) === camel) return k;
  }
  return camel;
}
