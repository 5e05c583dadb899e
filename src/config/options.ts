/**
 * App configuration: Celery's settings in camelCase, with Celery's own
 * snake_case names and old `CELERY_*` upper-case names accepted as
 * aliases so a Celery user finds theirs. `AppSettings` documents every
 * setting; the schema that checks them is src/config/schema.ts (kept equal
 * to this interface by the compile-time checks at the end of this file).
 */
import type { KeyObject, X509Certificate } from 'node:crypto';
import type { z } from 'zod';
import type { DecodeLimits } from '../codec/limits.ts';
import { DEFAULT_DECODE_LIMITS } from '../codec/limits.ts';
import type { ResultKeyRing } from '../codec/encryption.ts';
import type { CeleryAuthLayout, CertStore, SigningKeyRing } from '../codec/signing/index.ts';
import {
  CONNECTION_FIELDS, CORE_FIELDS, DECODE_LIMIT_FIELDS, LIMIT_FIELDS, parseSettings, SECURITY_FIELDS, TLS_FIELDS, TRANSPORT_OPTION_FIELDS, UNSAFE_FIELDS,
  type Field, type ReplayStoreSetting, type SendRateLimit, type UseSslSetting,
} from './schema.ts';

export { camelCaseKey, normalizeSettings, SettingError } from './schema.ts';
export type { ReplayStoreSetting, SendRateLimit, UseSslSetting } from './schema.ts';

/** Options of kombu-style transports (`broker_transport_options`). */
export interface TransportOptions {
  /** Redis Sentinel: the name of the monitored primary (kombu's `master_name`; required with `sentinel://`). */
  masterName?: string;
  /** Redis Sentinel: options of the sentinel connections (kombu's `sentinel_kwargs`): `username`, `password`. */
  sentinelKwargs?: object;
  /**
   * Redis safe mode: each send (or result store) waits until this many
   * replicas hold it (`WAIT n`), and fails with `ConnectionError`
   * `ERR_NOT_REPLICATED` when fewer acknowledge in time, so a failover
   * cannot lose what the client was told is stored (default 0: off).
   */
  waitForReplicas?: number;
  /** Redis safe mode: seconds `WAIT` may take (default 1). */
  waitForReplicasTimeout?: number;
  /**
   * RabbitMQ quorum queues: `x-delivery-limit` of task queues — a message
   * redelivered more often is dead-lettered by RabbitMQ into `<queue>.dlq`
   * (never dropped). Needs `taskDefaultQueueType: 'quorum'`.
   */
  deliveryLimit?: number;
  /** Seconds a taken, unacknowledged message stays invisible before it is restored (default 3600). */
  visibilityTimeout?: number;
  /** Prefix prepended to every broker key (kombu's `global_keyprefix`). */
  globalKeyprefix?: string;
  /** Maximum messages per queue before sends fail with QueueFullError (0 = no limit). */
  maxQueueLength?: number;
  /** Most records kept per dead-letter queue (Redis and SQLite; default 100000; 0 = no limit). */
  deadLetterMaxLength?: number;
  /** Redis: name of kombu's unacked hash (default `unacked`; must match Python workers sharing the broker). */
  unackedKey?: string;
  /** Redis: name of kombu's unacked index sorted set (default `unacked_index`). */
  unackedIndexKey?: string;
  /** Redis: name of kombu's restore mutex key (default `unacked_mutex`). */
  unackedMutexKey?: string;
  /** AMQP: first reconnect back-off step, ms (default 100). */
  reconnectDelayMs?: number;
  /** AMQP: longest reconnect back-off step, ms (default 5000). */
  reconnectDelayMaxMs?: number;
}

/** Everything `createApp` accepts. Settings not given come from the environment, then defaults. */
export interface AppSettings {
  /** Broker URL; default from `CELERIAC_BROKER_URL` / `CELERY_BROKER_URL` (or their `_FILE`). */
  brokerUrl?: string;
  /** Result backend URL; default from `CELERIAC_RESULT_BACKEND` / `CELERY_RESULT_BACKEND`. */
  resultBackend?: string;
  /** Serializer for task messages: `json` (default), `msgpack` or `auth` (signed). */
  taskSerializer?: 'json' | 'msgpack' | 'auth';
  /** Serializer for results: `json` (default) or `msgpack`. */
  resultSerializer?: 'json' | 'msgpack';
  /** Content accepted by workers: names (`json`, `msgpack`, `auth`) or MIME types. Default `['json']`. */
  acceptContent?: string[];
  /** Content accepted when reading results. Default: json and msgpack. */
  resultAcceptContent?: string[];
  /** Seconds results live; default 86400 (1 day); 0 = forever. */
  resultExpires?: number;
  /** Store name, args, kwargs, worker, retries and queue with each result. */
  resultExtended?: boolean;
  /** Queue for tasks without a route (default `celery`). */
  taskDefaultQueue?: string;
  /** Ack after the task finished instead of when it starts (default false, as Celery). */
  taskAcksLate?: boolean;
  /** With acksLate: requeue a task whose child process died (default false). */
  taskRejectOnWorkerLost?: boolean;
  /**
   * Most times a message is given back after its run was lost (its process
   * crashed, or its result could not be settled) before it is dead-lettered
   * with a FAILURE record (default 3).
   */
  taskMaxRedeliveries?: number;
  // Broker-counted redeliveries (issue 21: RabbitMQ quorum queues' x-delivery-count).
  /**
   * Most redeliveries of one message that the broker itself counts
   * (RabbitMQ quorum queues' `x-delivery-count`) before the worker
   * dead-letters it, with a FAILURE record, instead of running it (default
   * 20; 0 = no such limit). It holds where the loss ledger cannot see: a
   * killed supervisor, another node, no result backend. The broker counts
   * every return (crashes, kills, lost connections, give-backs at
   * shutdown), so keep it well above `taskMaxRedeliveries`.
   */
  taskMaxDeliveryCount?: number;
  /** Store STARTED when a task begins (default false). */
  taskTrackStarted?: boolean;
  /** Do not store results (default false). */
  taskIgnoreResult?: boolean;
  /** Store FAILURE even for ignore_result tasks. */
  taskStoreErrorsEvenIfIgnored?: boolean;
  /** Hard time limit in seconds for every task (child killed). */
  taskTimeLimit?: number;
  /** Soft time limit in seconds (the task's signal aborts). */
  taskSoftTimeLimit?: number;
  /** Default countdown of `retry()` in seconds (default 180). */
  taskDefaultRetryDelay?: number;
  /** Default max retries (default 3; null = unlimited). */
  taskMaxRetries?: number | null;
  /** Per-task routing: `{ 'tasks.add': { queue: 'math' } }`. */
  taskRoutes?: Record<string, { queue?: string; priority?: number }>;
  /** Transport options (`broker_transport_options`). */
  brokerTransportOptions?: TransportOptions;
  /** Result backend transport options (Celery's `result_backend_transport_options`): `masterName`, `sentinelKwargs`, `waitForReplicas`. */
  resultBackendTransportOptions?: Pick<TransportOptions, 'masterName' | 'sentinelKwargs' | 'waitForReplicas' | 'waitForReplicasTimeout'>;
  /** Decoding limits for message bodies and result records. */
  decodeLimits?: Partial<DecodeLimits>;
  // ── Celery events (issue 16) ──
  /**
   * Workers send task events (`task-received` … `task-revoked`) to the
   * event exchange, as Celery's `worker_send_task_events` / `-E` (default
   * false). Worker events (online, heartbeat, offline) go out anyway unless
   * the worker runs `--without-heartbeat`, as in Celery.
   */
  workerSendTaskEvents?: boolean;
  /** Clients (and workers' follow-ups) send `task-sent` for each task message, as Celery's `task_send_sent_event` (default false). */
  taskSendSentEvent?: boolean;
  /**
   * OpenTelemetry tracing (default false): spans for sending (`apply_async/<task>`),
   * running (`run/<task>`) and waiting for results, with W3C trace context carried in
   * the message headers as Python's opentelemetry-instrumentation-celery does. Needs
   * `@opentelemetry/api` installed and an SDK registered by the application.
   */
  telemetryTracing?: boolean;
  /** The event exchange (Celery's `event_exchange`, default `celeryev`). */
  eventExchange?: string;
  // ── message security (read by src/config/security-settings.ts; snake_case and CELERY_* forms accepted) ──
  /** Celery's `security_key`: RSA private key of the `auth` signer, a path (mode 0600/0400) or PEM text. Env `CELERIAC_SECURITY_KEY` (PEM) / `_FILE`, `CELERY_SECURITY_KEY`. */
  securityKey?: string | KeyObject;
  /** Passphrase of an encrypted `securityKey` (Celery ≥ 5.5's `security_key_password`). Env `CELERIAC_SECURITY_KEY_PASSWORD` / `_FILE`. */
  securityKeyPassword?: string;
  /** Celery's `security_certificate`: the signer's certificate, a path or PEM. Env `CELERIAC_SECURITY_CERTIFICATE` / `_FILE`, `CELERY_SECURITY_CERTIFICATE`. */
  securityCertificate?: string | X509Certificate;
  /** Celery's `security_cert_store`: PEM file or directory of trusted signers (default: the own certificate). Env `CELERIAC_SECURITY_CERT_STORE`, `CELERY_SECURITY_CERT_STORE`. */
  securityCertStore?: string | CertStore;
  /** Celery's `security_digest`: `sha256` (default), `sha384`, `sha512`. */
  securityDigest?: string;
  /** Wire layout of the `auth` body: `celery-5.2` (default, Celery ≤ 5.4) or `celery-5.5`; both are accepted on input. */
  securityAuthLayout?: CeleryAuthLayout;
  /** Ed25519/HMAC signing key ring text (newest signs, all verify). Env `CELERIAC_SIGNING_KEYS` / `_FILE`. */
  securitySigningKeys?: string | SigningKeyRing;
  /** Verify-only key ring (Ed25519 public keys) for workers. Env `CELERIAC_VERIFY_KEYS` / `_FILE`. */
  securityVerifyKeys?: string | SigningKeyRing;
  /** Seconds a message signature stays valid after the later of sending and its eta (default: 2 × the visibility timeout, at least 3600). Must cover queueing and a crash-restore; eta and retry delays are added on top. */
  securityMessageTtl?: number;
  /** Longest signature lifetime a worker accepts, seconds (default 604800): the most it must remember a nonce. */
  securityReplayWindow?: number;
  /** Signer ids whose Celery body-only (`auth`) signatures are accepted without Celeriac's header (Python producers): weaker, warned at every start. */
  securityAcceptBodyOnlyFrom?: string[];
  /** Where replay nonces live: `auto` (a Redis or PostgreSQL broker/backend, else the SQLite broker file, else process memory), `redis`, `postgres`, `sqlite`, `memory`, or a `ReplayStore`. */
  securityReplayStore?: ReplayStoreSetting;
  /** File of the `local` replay store (default `.celeriac/replay.db`). */
  securityReplayFile?: string;
  /** Accept unsigned messages (and run without signing in production). Logged at every start. */
  unsafeAcceptUnsigned?: boolean;
  /** AES-256-GCM result key ring text: results encrypted at rest (Python clients cannot read them). Env `CELERIAC_RESULT_KEYS` / `_FILE`. */
  resultEncryptionKeys?: string | ResultKeyRing;
  /** With a result key ring, still read plaintext records (mixed pools with Python workers). Logged at every start. */
  unsafeAcceptUnencryptedResults?: boolean;
  // ── remote-control security (src/config/control-settings.ts, src/security/control-guard.ts; docs/control-security.md) ──
  /** Control commands this worker obeys (default: the read-only inspect commands; `@inspect`, `@control`, `@all` expand). Destructive ones (revoke, shutdown, rate_limit, …) are opt-in. Env `CELERIAC_WORKER_CONTROL_ALLOW`. */
  workerControlAllow?: string[];
  /** Of those, the commands obeyed without a signature where signatures are verified (default: the read-only inspect commands, so Python's `celery inspect` works). A destructive one here is refused at start in production unless `unsafeAllowUnsignedControl`. Env `CELERIAC_WORKER_CONTROL_ALLOW_UNSIGNED`. */
  workerControlAllowUnsigned?: string[];
  /** Append-only JSON-lines audit file of control commands and answers (mode 0600; not rotated). Unset: audit lines go to the worker's log only. Env `CELERIAC_WORKER_CONTROL_AUDIT_LOG`. */
  workerControlAuditLog?: string;
  // ── submission limits (src/client/submission-limits.ts) ──
  /** Client-wide send rate limit: `'100/s'`, or `{ rate, burst?, shared? }` (`shared`: one bucket in Redis or PostgreSQL for all producers with that name). */
  sendRateLimit?: SendRateLimit;
  /** Over a send rate limit: `false` (default) fails with `RateLimitedError`; `true` waits; a number waits at most that many ms. */
  sendRateLimitWait?: boolean | number;
  /** Most messages a queue may hold before `send` fails with `QueueFullError`: one number, or `{ queue: n, '*': default }`. */
  maxQueueLength?: number | Record<string, number>;
  // ── broker connection (src/transport/amqp/options.ts, the worker's start-up retry) ──
  /**
   * AMQP: add `x-max-priority: N` (1–255) to every task queue declared
   * (Celery's `task_queue_max_priority`); unset = no priorities. Must match
   * how Python declares the same queues. Read by `src/transport/amqp/options.ts`.
   */
  taskQueueMaxPriority?: number;
  /** AMQP: `classic` (default) or `quorum` (`x-queue-type: quorum`, replicated on a cluster). */
  taskDefaultQueueType?: 'classic' | 'quorum';
  /** AMQP: seconds one connection attempt may take (TCP, TLS and handshake); default 4. */
  brokerConnectionTimeout?: number;
  /** AMQP: reconnect after a lost connection (default true). */
  brokerConnectionRetry?: boolean;
  /**
   * AMQP: consecutive failed reconnects before giving up; default unlimited.
   * `celeriac worker` start-up: connection attempts before giving up when the
   * broker or backend is not reachable yet (default 100, Celery's; 0 = forever).
   */
  brokerConnectionMaxRetries?: number | null;
  /**
   * `celeriac worker`: when the broker or result backend cannot be reached at
   * start-up, retry with a countdown (2 s, 4 s, … up to 30 s between attempts)
   * instead of exiting (Celery's `broker_connection_retry_on_startup`; default true).
   */
  brokerConnectionRetryOnStartup?: boolean;
  /** AMQP: heartbeat in seconds (default 60; 0 = off). */
  brokerHeartbeat?: number;
  /** AMQP: seconds a send waits for a reachable broker and its confirm before failing (default 30). */
  brokerPublishTimeout?: number;
  // ── TLS (read by src/config/tls.ts) ──
  /** Celery's `broker_use_ssl`: `true`, or an object of TLS settings (`ssl_cert_reqs`, `ssl_ca_certs`, `ssl_certfile`, `ssl_keyfile`, …; see src/config/tls.ts); merged with the URL's own parameters. */
  brokerUseSsl?: UseSslSetting;
  /** Celery's `redis_backend_use_ssl`: TLS settings of a Redis result backend, as `brokerUseSsl`. */
  redisBackendUseSsl?: UseSslSetting;
  // ── overrides of the security policy (src/config/policy.ts) ──
  /** Accept a network connection without TLS (CEL-003/CEL-015). Logged at every start. */
  unsafeAllowPlaintext?: boolean;
  /** Accept TLS without certificate or host name verification, or below TLS 1.2. Logged at every start. */
  unsafeAllowInsecureTls?: boolean;
  /** Accept a broker or backend without credentials (CEL-001/CEL-014). Logged at every start. */
  unsafeAllowNoCredentials?: boolean;
  /** Accept known default credentials such as guest/guest (CEL-011). Logged at every start. */
  unsafeAllowDefaultCredentials?: boolean;
  /** Accept a weak password (CEL-011). Logged at every start. */
  unsafeAllowWeakCredentials?: boolean;
  /** Accept content types other than json, msgpack and auth (CEL-005). Logged at every start. */
  unsafeAllowContent?: boolean;
  /** Obey destructive remote-control commands without a signature (CEL-022). Logged at every start. */
  unsafeAllowUnsignedControl?: boolean;
}

/** `brokerUrl` → `broker_url` (digits stay as they are). */
type SnakeCase<S extends string> = S extends `${infer H}${infer T}` ? `${H extends Lowercase<H> ? H : `_${Lowercase<H>}`}${SnakeCase<T>}` : S;

/** Celery's spellings of every setting: snake_case (`task_acks_late`) and old upper case (`TASK_ACKS_LATE`, `CELERY_TASK_ACKS_LATE`). */
export type CelerySpellings<T> = { [K in keyof T & string as SnakeCase<K>]?: T[K] } & {
  [K in keyof T & string as Uppercase<SnakeCase<K>> | `CELERY_${Uppercase<SnakeCase<K>>}`]?: T[K];
};

/** Celery's old names that are not a spelling of ours (see `canonicalKey` in schema.ts). */
export interface CeleryOldNames {
  /** Old name of `resultExpires`. */
  CELERY_TASK_RESULT_EXPIRES?: AppSettings['resultExpires'];
  /** Old name of `taskRoutes`. */
  CELERY_ROUTES?: AppSettings['taskRoutes'];
  /** Old name of `taskDefaultQueue`. */
  CELERY_DEFAULT_QUEUE?: AppSettings['taskDefaultQueue'];
  /** Old name of `taskAcksLate`. */
  CELERY_ACKS_LATE?: AppSettings['taskAcksLate'];
  /** Old name of `taskTrackStarted`. */
  CELERY_TRACK_STARTED?: AppSettings['taskTrackStarted'];
  /** Old name of `taskIgnoreResult`. */
  CELERY_IGNORE_RESULT?: AppSettings['taskIgnoreResult'];
  /** Old name of `taskStoreErrorsEvenIfIgnored`. */
  CELERY_STORE_ERRORS_EVEN_IF_IGNORED?: AppSettings['taskStoreErrorsEvenIfIgnored'];
  /** Old name of `taskTimeLimit`. */
  CELERYD_TASK_TIME_LIMIT?: AppSettings['taskTimeLimit'];
  /** Old name of `taskSoftTimeLimit`. */
  CELERYD_TASK_SOFT_TIME_LIMIT?: AppSettings['taskSoftTimeLimit'];
  /** Old name of `taskQueueMaxPriority`. */
  CELERY_QUEUE_MAX_PRIORITY?: AppSettings['taskQueueMaxPriority'];
}

/** What `createApp` and `resolveSettings` accept: every setting in camelCase or one of Celery's spellings. */
export type AppSettingsInput = AppSettings & CelerySpellings<AppSettings> & CeleryOldNames;

type Section<F> = { -readonly [K in keyof F & keyof AppSettings]?: Exclude<AppSettings[K], null> | (null extends AppSettings[K] ? null : never) };

/** Message-security settings as given (loaded and checked by src/config/security-settings.ts). */
export type SecuritySection = Section<typeof SECURITY_FIELDS>;
/** Send rate limits and queue caps as given (checked by src/client/submission-limits.ts). */
export type LimitsSection = Section<typeof LIMIT_FIELDS>;
/** Broker connection settings as given (AMQP options, the worker's start-up retry). */
export type ConnectionSection = Section<typeof CONNECTION_FIELDS>;
/** `brokerUseSsl` and `redisBackendUseSsl` as given (checked by src/config/tls.ts). */
export type TlsSection = Section<typeof TLS_FIELDS>;
/** The policy's opt-outs given in the settings (the environment's are read by the policy). */
export type UnsafeSection = Section<typeof UNSAFE_FIELDS>;

/** Fully resolved settings: the core ones with defaults applied, the others in typed sections. */
export interface ResolvedSettings {
  brokerUrl: string | undefined;
  resultBackend: string | undefined;
  taskSerializer: 'json' | 'msgpack' | 'auth';
  resultSerializer: 'json' | 'msgpack';
  acceptContent: string[];
  resultAcceptContent: string[];
  resultExpires: number;
  resultExtended: boolean;
  taskDefaultQueue: string;
  taskAcksLate: boolean;
  taskRejectOnWorkerLost: boolean;
  taskMaxRedeliveries: number;
  /** Broker-counted redeliveries (issue 21): see `AppSettings.taskMaxDeliveryCount`. */
  taskMaxDeliveryCount: number;
  taskTrackStarted: boolean;
  workerSendTaskEvents: boolean;
  taskSendSentEvent: boolean;
  /** OpenTelemetry tracing (src/observability/tracing). */
  telemetryTracing: boolean;
  eventExchange: string;
  taskIgnoreResult: boolean;
  taskStoreErrorsEvenIfIgnored: boolean;
  taskTimeLimit: number | undefined;
  taskSoftTimeLimit: number | undefined;
  taskDefaultRetryDelay: number;
  taskMaxRetries: number | null;
  taskRoutes: Record<string, { queue?: string; priority?: number }>;
  brokerTransportOptions: TransportOptions;
  resultBackendTransportOptions: Record<string, unknown>;
  decodeLimits: DecodeLimits;
  security: SecuritySection;
  limits: LimitsSection;
  connection: ConnectionSection;
  tls: TlsSection;
  unsafe: UnsafeSection;
}

/** The values of one section's fields that were given (null kept only where it means something). */
function section<F extends Record<string, Field>, R = Section<F>>(s: Record<string, unknown>, fields: F, keepNull: readonly string[] = []): R {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(fields)) {
    const v = s[k];
    if (v === undefined || (v === null && !keepNull.includes(k))) continue;
    out[k] = v;
  }
  return out as R;
}

/**
 * Check every setting against the schema (unknown keys and wrong types
 * throw `SettingError`, a `ConfigError`), apply defaults and group the
 * rest in typed sections. Security rules are checked separately by the policy.
 */
export function resolveSettings(input: AppSettingsInput = {}): ResolvedSettings {
  const s = parseSettings(input as Record<string, unknown>);
  const val = <T>(k: keyof typeof CORE_FIELDS, def: T): T => (s[k] === undefined || s[k] === null ? def : (s[k] as T));
  const taskSerializer = val<ResolvedSettings['taskSerializer']>('taskSerializer', 'json');
  return {
    brokerUrl: val<string | undefined>('brokerUrl', undefined),
    resultBackend: val<string | undefined>('resultBackend', undefined),
    taskSerializer,
    resultSerializer: val<ResolvedSettings['resultSerializer']>('resultSerializer', 'json'),
    acceptContent: val('acceptContent', [taskSerializer]),
    resultAcceptContent: val('resultAcceptContent', ['json', 'msgpack']),
    resultExpires: val('resultExpires', 86_400),
    resultExtended: val('resultExtended', false),
    taskDefaultQueue: val('taskDefaultQueue', '') || 'celery',
    taskAcksLate: val('taskAcksLate', false),
    taskRejectOnWorkerLost: val('taskRejectOnWorkerLost', false),
    taskMaxRedeliveries: Math.max(0, Math.floor(val('taskMaxRedeliveries', 3))),
    // Broker-counted redeliveries (issue 21: RabbitMQ quorum queues' x-delivery-count).
    taskMaxDeliveryCount: Math.max(0, Math.floor(val('taskMaxDeliveryCount', 20))),
    taskTrackStarted: val('taskTrackStarted', false),
    workerSendTaskEvents: val('workerSendTaskEvents', false),
    taskSendSentEvent: val('taskSendSentEvent', false),
    telemetryTracing: val('telemetryTracing', false),
    eventExchange: val('eventExchange', '') || 'celeryev',
    taskIgnoreResult: val('taskIgnoreResult', false),
    taskStoreErrorsEvenIfIgnored: val('taskStoreErrorsEvenIfIgnored', false),
    taskTimeLimit: val<number | undefined>('taskTimeLimit', undefined),
    taskSoftTimeLimit: val<number | undefined>('taskSoftTimeLimit', undefined),
    taskDefaultRetryDelay: val('taskDefaultRetryDelay', 180),
    taskMaxRetries: s.taskMaxRetries === null ? null : val('taskMaxRetries', 3),
    taskRoutes: val<ResolvedSettings['taskRoutes']>('taskRoutes', {}),
    brokerTransportOptions: section<typeof TRANSPORT_OPTION_FIELDS, TransportOptions>(val<Record<string, unknown>>('brokerTransportOptions', {}), TRANSPORT_OPTION_FIELDS),
    resultBackendTransportOptions: val<Record<string, unknown>>('resultBackendTransportOptions', {}),
    decodeLimits: { ...DEFAULT_DECODE_LIMITS, ...section<typeof DECODE_LIMIT_FIELDS, Partial<DecodeLimits>>(val<Record<string, unknown>>('decodeLimits', {}), DECODE_LIMIT_FIELDS) },
    security: section(s, SECURITY_FIELDS),
    limits: section(s, LIMIT_FIELDS),
    connection: section(s, CONNECTION_FIELDS, ['brokerConnectionMaxRetries']),
    tls: section(s, TLS_FIELDS),
    unsafe: section(s, UNSAFE_FIELDS),
  };
}

/**
 * Resolved settings as one flat object of camelCase settings again (what
 * `celeriac audit --app` judges): the core fields that are set plus every
 * section's values.
 */
export function flattenSettings(resolved: ResolvedSettings): Record<string, unknown> {
  const { security, limits, connection, tls, unsafe, ...core } = resolved;
  const out: Record<string, unknown> = {};
  for (const part of [security, limits, connection, tls, unsafe, core] as Record<string, unknown>[]) {
    for (const [k, v] of Object.entries(part)) if (v !== undefined) out[k] = v;
  }
  return out;
}

// ── compile-time checks: AppSettings and the schema name the same settings, with compatible types ──

type AllFields = typeof CORE_FIELDS & typeof SECURITY_FIELDS & typeof LIMIT_FIELDS & typeof CONNECTION_FIELDS & typeof TLS_FIELDS & typeof UNSAFE_FIELDS;
type FieldInput<F> = F extends Field<infer S> ? z.input<S> | null | undefined : never;
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
type NestedInput<F> = { [K in keyof F]?: FieldInput<F[K]> };

const settingKeysMatch: Same<keyof AppSettings, keyof AllFields> = true;
const transportKeysMatch: Same<keyof TransportOptions, keyof typeof TRANSPORT_OPTION_FIELDS> = true;
const decodeKeysMatch: Same<keyof DecodeLimits, keyof typeof DECODE_LIMIT_FIELDS> = true;
/** Every value the interface allows, the schema accepts. */
const accepted = (s: AppSettings): { [K in keyof AllFields]?: FieldInput<AllFields[K]> } => s;
const acceptedTransport = (t: TransportOptions): NestedInput<typeof TRANSPORT_OPTION_FIELDS> => t;
const acceptedLimits = (t: Partial<DecodeLimits>): NestedInput<typeof DECODE_LIMIT_FIELDS> => t;
void [settingKeysMatch, transportKeysMatch, decodeKeysMatch, accepted, acceptedTransport, acceptedLimits];
