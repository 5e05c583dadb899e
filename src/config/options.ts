/**
 * App configuration: Celery's settings in camelCase, with Celery's own
 * snake_case names accepted as aliases so a Celery user finds theirs.
 */
import { ConfigError } from '../errors.ts';
import type { DecodeLimits } from '../codec/limits.ts';
import { DEFAULT_DECODE_LIMITS } from '../codec/limits.ts';
import type { KeyObject, X509Certificate } from 'node:crypto';
import type { ResultKeyRing } from '../codec/encryption.ts';
import type { CeleryAuthLayout, CertStore, SigningKeyRing } from '../codec/signing/index.ts';
import type { ReplayStoreSetting } from './security-settings.ts';
import type { SendRateLimit } from '../client/submission-limits.ts';

/** Options of kombu-style transports (`broker_transport_options`). */
export interface TransportOptions {
  /** Seconds a taken, unacknowledged message stays invisible before it is restored (default 3600). */
  visibilityTimeout?: number;
  /** Prefix prepended to every broker key (kombu's `global_keyprefix`). */
  globalKeyprefix?: string;
  /** Maximum messages per queue before sends fail with QueueFullError (0 = no limit). */
  maxQueueLength?: number;
  [extra: string]: unknown;
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
  /** Decoding limits for message bodies and result records. */
  decodeLimits?: Partial<DecodeLimits>;
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
  /** Where replay nonces live: `auto` (Redis broker/backend, else the SQLite broker file, else process memory), `redis`, `sqlite`, `memory`, or a `ReplayStore`. */
  securityReplayStore?: ReplayStoreSetting;
  /** File of the `local` replay store (default `.celeriac/replay.db`). */
  securityReplayFile?: string;
  /** Accept unsigned messages (and run without signing in production). Logged at every start. */
  unsafeAcceptUnsigned?: boolean;
  /** AES-256-GCM result key ring text: results encrypted at rest (Python clients cannot read them). Env `CELERIAC_RESULT_KEYS` / `_FILE`. */
  resultEncryptionKeys?: string | ResultKeyRing;
  /** With a result key ring, still read plaintext records (mixed pools with Python workers). Logged at every start. */
  unsafeAcceptUnencryptedResults?: boolean;
  // ── submission limits (src/client/submission-limits.ts) ──
  /** Client-wide send rate limit: `'100/s'`, or `{ rate, burst?, shared? }` (`shared`: one bucket in Redis for all producers with that name). */
  sendRateLimit?: SendRateLimit;
  /** Over a send rate limit: `false` (default) fails with `RateLimitedError`; `true` waits; a number waits at most that many ms. */
  sendRateLimitWait?: boolean | number;
  /** Most messages a queue may hold before `send` fails with `QueueFullError`: one number, or `{ queue: n, '*': default }`. */
  maxQueueLength?: number | Record<string, number>;
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
  [extra: string]: unknown;
}

/** Fully resolved settings (defaults applied). */
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
  taskTrackStarted: boolean;
  taskIgnoreResult: boolean;
  taskStoreErrorsEvenIfIgnored: boolean;
  taskTimeLimit: number | undefined;
  taskSoftTimeLimit: number | undefined;
  taskDefaultRetryDelay: number;
  taskMaxRetries: number | null;
  taskRoutes: Record<string, { queue?: string; priority?: number }>;
  brokerTransportOptions: TransportOptions;
  decodeLimits: DecodeLimits;
  /** Every other given setting, camelCased, for modules that own them (security, TLS, …). */
  extra: Record<string, unknown>;
}

/** snake_case → camelCase, plus Celery's old uppercase names. */
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

/** Normalize a settings object: accept snake_case and camelCase keys, detect conflicts. */
export function normalizeSettings(input: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [rawKey, value] of Object.entries(input)) {
    if (value === undefined) continue;
    let key = camelCaseKey(rawKey);
    key = ALIASES[key] ?? key;
    if (key in out && out[key] !== value) {
      throw new ConfigError(`setting ${rawKey} conflicts with another spelling of the same setting`, {
        hint: 'give each setting once, either camelCase or snake_case',
      });
    }
    out[key] = key === 'brokerTransportOptions' && value && typeof value === 'object' ? normalizeSettings(value as Record<string, unknown>) : value;
  }
  return out;
}

const KNOWN = new Set([
  'brokerUrl', 'resultBackend', 'taskSerializer', 'resultSerializer', 'acceptContent', 'resultAcceptContent',
  'resultExpires', 'resultExtended', 'taskDefaultQueue', 'taskAcksLate', 'taskRejectOnWorkerLost', 'taskMaxRedeliveries',
  'taskTrackStarted', 'taskIgnoreResult', 'taskStoreErrorsEvenIfIgnored', 'taskTimeLimit', 'taskSoftTimeLimit',
  'taskDefaultRetryDelay', 'taskMaxRetries', 'taskRoutes', 'brokerTransportOptions', 'decodeLimits',
]);

function bool(v: unknown, name: string, def: boolean): boolean {
  if (v === undefined) return def;
  if (typeof v === 'boolean') return v;
  throw new ConfigError(`${name} must be true or false`);
}

function num(v: unknown, name: string, def: number | undefined, min = 0): number | undefined {
  if (v === undefined || v === null) return def;
  if (typeof v === 'number' && Number.isFinite(v) && v >= min) return v;
  throw new ConfigError(`${name} must be a number ≥ ${min}`);
}

/** Apply defaults and check types. Security rules are checked separately by the policy. */
export function resolveSettings(input: AppSettings = {}): ResolvedSettings {
  const s = normalizeSettings(input as Record<string, unknown>);
  const extra: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(s)) if (!KNOWN.has(k)) extra[k] = v;
  const taskSerializer = (s.taskSerializer ?? 'json') as ResolvedSettings['taskSerializer'];
  if (!['json', 'msgpack', 'auth'].includes(taskSerializer)) {
    throw new ConfigError(`taskSerializer ${JSON.stringify(taskSerializer)} is not supported`, {
      hint: 'use json, msgpack or auth; pickle and yaml are refused because they can execute code',
    });
  }
  const resultSerializer = (s.resultSerializer ?? 'json') as ResolvedSettings['resultSerializer'];
  if (!['json', 'msgpack'].includes(resultSerializer)) {
    throw new ConfigError(`resultSerializer ${JSON.stringify(resultSerializer)} is not supported`, { hint: 'use json or msgpack' });
  }
  const list = (v: unknown, name: string, def: string[]): string[] => {
    if (v === undefined) return def;
    if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v as string[];
    throw new ConfigError(`${name} must be a list of content type names`);
  };
  const maxRetries = s.taskMaxRetries === null ? null : num(s.taskMaxRetries, 'taskMaxRetries', 3) ?? 3;
  return {
    brokerUrl: typeof s.brokerUrl === 'string' ? s.brokerUrl : undefined,
    resultBackend: typeof s.resultBackend === 'string' ? s.resultBackend : undefined,
    taskSerializer,
    resultSerializer,
    acceptContent: list(s.acceptContent, 'acceptContent', [taskSerializer]),
    resultAcceptContent: list(s.resultAcceptContent, 'resultAcceptContent', ['json', 'msgpack']),
    resultExpires: num(s.resultExpires, 'resultExpires', 86_400)!,
    resultExtended: bool(s.resultExtended, 'resultExtended', false),
    taskDefaultQueue: typeof s.taskDefaultQueue === 'string' && s.taskDefaultQueue ? s.taskDefaultQueue : 'celery',
    taskAcksLate: bool(s.taskAcksLate, 'taskAcksLate', false),
    taskRejectOnWorkerLost: bool(s.taskRejectOnWorkerLost, 'taskRejectOnWorkerLost', false),
    taskMaxRedeliveries: Math.max(0, Math.floor(num(s.taskMaxRedeliveries, 'taskMaxRedeliveries', 3)!)),
    taskTrackStarted: bool(s.taskTrackStarted, 'taskTrackStarted', false),
    taskIgnoreResult: bool(s.taskIgnoreResult, 'taskIgnoreResult', false),
    taskStoreErrorsEvenIfIgnored: bool(s.taskStoreErrorsEvenIfIgnored, 'taskStoreErrorsEvenIfIgnored', false),
    taskTimeLimit: num(s.taskTimeLimit, 'taskTimeLimit', undefined),
    taskSoftTimeLimit: num(s.taskSoftTimeLimit, 'taskSoftTimeLimit', undefined),
    taskDefaultRetryDelay: num(s.taskDefaultRetryDelay, 'taskDefaultRetryDelay', 180)!,
    taskMaxRetries: maxRetries,
    taskRoutes: (s.taskRoutes as ResolvedSettings['taskRoutes']) ?? {},
    brokerTransportOptions: (s.brokerTransportOptions as TransportOptions) ?? {},
    decodeLimits: { ...DEFAULT_DECODE_LIMITS, ...((s.decodeLimits as Partial<DecodeLimits>) ?? {}) },
    extra,
  };
}
