/**
 * The message-security settings: read from the app settings (camelCase,
 * Celery's snake_case, `CELERY_*` upper case) and the environment, checked,
 * and turned into loaded keys, rings and certificate stores. Every error is
 * a `ConfigError` naming the setting and the fix, never a key.
 *
 * | setting | environment | meaning |
 * | --- | --- | --- |
 * | `securityKey` (`security_key`) | `CELERIAC_SECURITY_KEY` (PEM), `CELERIAC_SECURITY_KEY_FILE`, `CELERY_SECURITY_KEY` (path or PEM) | RSA private key of the `auth` signer: a path (mode 0600/0400 required) or the PEM text |
 * | `securityKeyPassword` | `CELERIAC_SECURITY_KEY_PASSWORD`(`_FILE`) | passphrase of an encrypted key (Celery ≥ 5.5's `security_key_password`) |
 * | `securityCertificate` (`security_certificate`) | `CELERIAC_SECURITY_CERTIFICATE` (PEM), `…_FILE`, `CELERY_SECURITY_CERTIFICATE` | the signer's X.509 certificate: path or PEM |
 * | `securityCertStore` (`security_cert_store`) | `CELERIAC_SECURITY_CERT_STORE`, `CELERY_SECURITY_CERT_STORE` | PEM file or directory of trusted signers; default: the own certificate |
 * | `securityDigest` (`security_digest`) | `CELERY_SECURITY_DIGEST` | `sha256` (default), `sha384`, `sha512` |
 * | `securityAuthLayout` | `CELERIAC_SECURITY_AUTH_LAYOUT` | `celery-5.2` (default; Celery ≤ 5.4 peers such as Debian's 5.2.6) or `celery-5.5`; both are accepted on input |
 * | `securitySigningKeys` | `CELERIAC_SIGNING_KEYS`(`_FILE`) | Ed25519/HMAC key ring text (newest signs) |
 * | `securityVerifyKeys` | `CELERIAC_VERIFY_KEYS`(`_FILE`) | verify-only ring (Ed25519 public keys) for workers |
 * | `resultEncryptionKeys` | `CELERIAC_RESULT_KEYS`(`_FILE`) | AES-256-GCM ring: results encrypted at rest |
 * | `securityMessageTtl` | `CELERIAC_SECURITY_MESSAGE_TTL` | seconds a signature stays valid after the later of sending and the eta (default: twice the broker's visibility timeout, at least 3600 — so a message restored after a worker crash is still valid) |
 * | `securityReplayWindow` | `CELERIAC_SECURITY_REPLAY_WINDOW` | longest signature lifetime a worker accepts, seconds (default 7 days): nonces are remembered that long at most |
 * | `securityAcceptBodyOnlyFrom` | `CELERIAC_SECURITY_ACCEPT_BODY_ONLY_FROM` (JSON list or one id per line) | signer ids whose Celery body-only signatures are accepted (Python producers) |
 * | `securityReplayStore` | `CELERIAC_SECURITY_REPLAY_STORE` | `auto` (default: the Redis broker or backend, else the SQLite broker file, else — RabbitMQ — `local`; `memory` only for the in-process broker), `redis`, `sqlite`, `local` (a SQLite file shared by every worker process on this machine), `memory`, or a `ReplayStore` object |
 * | `securityReplayFile` | `CELERIAC_SECURITY_REPLAY_FILE` | file of the `local` replay store (default `.celeriac/replay.db`) |
 * | `unsafeAcceptUnsigned` | `CELERIAC_UNSAFE_ACCEPT_UNSIGNED` | run without signing in production / accept unsigned messages |
 * | `unsafeAcceptUnencryptedResults` | `CELERIAC_UNSAFE_ACCEPT_UNENCRYPTED_RESULTS` | with a result ring, still read plaintext records (mixed pools with Python workers) |
 *
 * Explicit settings win over `CELERIAC_*` variables, which win over `CELERY_*` ones.
 */
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseResultKeyRing, type ResultKeyRing } from '../codec/encryption.ts';
import type { DecodeLimits } from '../codec/limits.ts';
import {
  CertStore,
  certStoreFromCertificates,
  checkCeleryAuthSigner,
  DEFAULT_CLOCK_SKEW_MS,
  loadCertStore,
  parsePemCertificates,
  parseSigningKeyRing,
  SigningKeyRing,
  type CeleryAuthLayout,
} from '../codec/signing/index.ts';
import { readSecretFile, type Env } from './env.ts';
import { isProduction } from './mode.ts';
import type { ResolvedSettings, SecuritySection } from './options.ts';
import { registerSecret } from './redact.ts';
import type { ReplayStoreSetting } from './schema.ts';
import { ConfigError } from '../errors.ts';

export type { ReplayStoreSetting } from './schema.ts';

/** The `auth` (Celery X.509) identity and trust store. */
export interface AuthSecurity {
  /** RSA private key; absent on a verify-only worker. */
  key: KeyObject | undefined;
  /** The signer's certificate; absent on a verify-only worker. */
  cert: X509Certificate | undefined;
  /** Trusted signers; absent when neither a store nor a certificate is configured. */
  store: CertStore | undefined;
  digest: string;
  layout: CeleryAuthLayout;
}

/** Loaded, checked message-security settings. */
export interface SecuritySettings {
  /** Production mode (`config/mode.ts`: CELERIAC_ENV, else NODE_ENV, else production). */
  production: boolean;
  taskSerializer: 'json' | 'msgpack' | 'auth';
  /** Accepted outer content types (from `acceptContent`). */
  acceptTypes: ReadonlySet<string>;
  limits: DecodeLimits;
  auth: AuthSecurity;
  signingRing: SigningKeyRing | undefined;
  verifyRing: SigningKeyRing | undefined;
  resultRing: ResultKeyRing | undefined;
  messageTtlMs: number;
  replayWindowMs: number;
  clockSkewMs: number;
  acceptBodyOnlyFrom: ReadonlySet<string>;
  unsafeAcceptUnsigned: boolean;
  unsafeAcceptUnencryptedResults: boolean;
  replayStore: ReplayStoreSetting;
  /** SQLite file of the `local` replay store (relative to the working directory unless absolute). */
  replayFile: string;
  brokerUrl: string | undefined;
  resultBackend: string | undefined;
  /** kombu's `global_keyprefix`, prepended to Celeriac's own Redis keys too. */
  keyPrefix: string;
  /** Broker visibility timeout, ms (bounds the replay-guard lease). */
  visibilityTimeoutMs: number;
}

/**
 * Shortest default signature lifetime past the later of sending and the eta.
 * The default is twice the visibility timeout (kombu's default: 1 h, so 2 h):
 * a message may wait in the queue, be taken by a worker that crashes, and be
 * restored one visibility timeout later — that redelivery must still verify.
 * Longer lifetimes cost replay-store memory (nonces are kept until expiry).
 */
export const DEFAULT_MESSAGE_TTL_S = 3600;
/** Default file of the `local` replay store: beside the embedded SQLite broker's default file. */
export const DEFAULT_REPLAY_FILE = '.celeriac/replay.db';

/** Default replay window: a week, so ETA tasks up to a week ahead are accepted. */
export const DEFAULT_REPLAY_WINDOW_S = 7 * 86_400;

const PEM_RE = /-----BEGIN [A-Z0-9 ]+-----/;

interface Found {
  value: string;
  /** Where it came from, for error messages (a setting or variable name, never the value). */
  source: string;
  /** True when `value` is a path to read, false when it is the content itself. */
  path: boolean;
}

/** `NAME` or `NAME_FILE` from the environment (both set is ambiguous). */
function fromEnv(env: Env, name: string, secret: boolean, valueIsPath = false): Found | undefined {
  const direct = env[name];
  const file = env[`${name}_FILE`];
  if (direct !== undefined && direct !== '' && file) throw new ConfigError(`both ${name} and ${name}_FILE are set`, { hint: 'unset one of them' });
  if (file) {
    if (secret) return { value: readSecretFile(file, `${name}_FILE`), source: `${name}_FILE`, path: false };
    return { value: file, source: `${name}_FILE`, path: true };
  }
  if (direct !== undefined && direct !== '') {
    // A path (CELERIAC_SECURITY_KEY may hold one) is not a secret; anything else given inline is.
    if (secret && !valueIsPath && !/^[./]/.test(direct)) registerSecret(direct);
    return { value: direct, source: name, path: valueIsPath };
  }
  return undefined;
}

/** A string setting of the section; '' counts as unset. Objects (a KeyObject, a CertStore, …) are read by the caller. */
function str(sec: SecuritySection, name: keyof SecuritySection): string | undefined {
  const v = sec[name];
  return typeof v === 'string' && v !== '' ? v : undefined;
}

/** A setting that holds either a path or PEM text: PEM is recognised by its armour. */
function pathOrPem(value: string, source: string): Found {
  return { value, source, path: !PEM_RE.test(value) };
}

function readText(found: Found, secret: boolean): string {
  if (!found.path) return found.value;
  if (secret) return readSecretFile(found.value, found.source);
  try {
    return readFileSync(found.value, 'latin1');
  } catch (err) {
    throw new ConfigError(`${found.source}: cannot read ${found.value} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { hint: 'check the path and that this user may read it' });
  }
}

function flag(sec: SecuritySection, env: Env, name: 'unsafeAcceptUnsigned' | 'unsafeAcceptUnencryptedResults', envName: string): boolean {
  const v = sec[name] ?? env[envName];
  if (v === undefined || v === null || v === '') return false;
  if (typeof v === 'boolean') return v;
  if (typeof v === 'string' && /^(1|true|yes|on)$/i.test(v.trim())) return true;
  if (typeof v === 'string' && /^(0|false|no|off)$/i.test(v.trim())) return false;
  throw new ConfigError(`${name} must be true or false`);
}

function seconds(sec: SecuritySection, env: Env, name: 'securityMessageTtl' | 'securityReplayWindow', envName: string, def: number): number {
  const raw = sec[name] ?? env[envName];
  if (raw === undefined || raw === null || raw === '') return def;
  const n = typeof raw === 'number' ? raw : typeof raw === 'string' ? Number(raw.trim()) : Number.NaN;
  if (!Number.isFinite(n) || n <= 0 || n > 366 * 86_400) throw new ConfigError(`${name} must be a number of seconds between 0 and one year`, { hint: `e.g. ${def}` });
  return n;
}

function keyRing(sec: SecuritySection, env: Env, setting: 'securitySigningKeys' | 'securityVerifyKeys', envName: string): SigningKeyRing | undefined {
  const v = sec[setting];
  if (v instanceof SigningKeyRing) return v;
  const text = v !== undefined && v !== '' ? v : fromEnv(env, envName, true)?.value;
  if (text === undefined) return undefined;
  registerSecret(text);
  return parseSigningKeyRing(text, setting in sec ? setting : envName);
}

function signerList(sec: SecuritySection, env: Env): Set<string> {
  const v = sec.securityAcceptBodyOnlyFrom ?? env.CELERIAC_SECURITY_ACCEPT_BODY_ONLY_FROM;
  if (v === undefined || v === null || v === '') return new Set();
  let list: unknown = v;
  if (typeof v === 'string') {
    const t = v.trim();
    if (t.startsWith('[')) {
      try {
        list = JSON.parse(t);
      } catch {
        throw new ConfigError('CELERIAC_SECURITY_ACCEPT_BODY_ONLY_FROM is not a JSON list', { hint: 'give a JSON list of signer ids, or one signer id per line' });
      }
    } else list = t.split(/\r?\n/).map((s) => s.trim()).filter(Boolean);
  }
  if (!Array.isArray(list) || !list.every((x) => typeof x === 'string' && x.length > 0)) {
    throw new ConfigError('securityAcceptBodyOnlyFrom must be a list of signer ids', { hint: "e.g. ['XX Celery Interop Test celery-test-signer 4660'] (issuer values and decimal serial, as in Celery)" });
  }
  return new Set(list as string[]);
}

function loadKey(sec: SecuritySection, env: Env): KeyObject | undefined {
  const v = sec.securityKey;
  if (typeof v === 'object') return v; // the schema let only a private KeyObject through
  const given = str(sec, 'securityKey');
  const found = given !== undefined ? pathOrPem(given, 'securityKey') : (fromEnv(env, 'CELERIAC_SECURITY_KEY', true) ?? (env.CELERY_SECURITY_KEY ? pathOrPem(env.CELERY_SECURITY_KEY, 'CELERY_SECURITY_KEY') : undefined));
  if (!found) return undefined;
  if (found.source === 'CELERIAC_SECURITY_KEY' && !PEM_RE.test(found.value)) found.path = true;
  const pem = readText(found, true);
  const passphrase = str(sec, 'securityKeyPassword') ?? fromEnv(env, 'CELERIAC_SECURITY_KEY_PASSWORD', true)?.value;
  if (passphrase) registerSecret(passphrase);
  try {
    return createPrivateKey(passphrase ? { key: pem, format: 'pem', passphrase } : { key: pem, format: 'pem' });
  } catch {
    // OpenSSL's message may quote the input; say only what is wrong.
    throw new ConfigError(`${found.source}: the private key does not parse${passphrase ? ' with the given password' : ''}`, {
      hint: 'give the PEM RSA private key of the signing certificate (securityKeyPassword for an encrypted key)',
    });
  }
}

function loadCert(sec: SecuritySection, env: Env): X509Certificate | undefined {
  const v = sec.securityCertificate;
  if (v instanceof X509Certificate) return v;
  const given = str(sec, 'securityCertificate');
  const found = given !== undefined ? pathOrPem(given, 'securityCertificate')
    : (fromEnv(env, 'CELERIAC_SECURITY_CERTIFICATE', false) ?? (env.CELERY_SECURITY_CERTIFICATE ? pathOrPem(env.CELERY_SECURITY_CERTIFICATE, 'CELERY_SECURITY_CERTIFICATE') : undefined));
  if (!found) return undefined;
  if (found.source === 'CELERIAC_SECURITY_CERTIFICATE' && !found.path && !PEM_RE.test(found.value)) found.path = true;
  const certs = parsePemCertificates(readText(found, false), found.source);
  return certs[0];
}

function loadStore(sec: SecuritySection, env: Env, cert: X509Certificate | undefined): CertStore | undefined {
  const v = sec.securityCertStore;
  if (v instanceof CertStore) return v;
  const path = str(sec, 'securityCertStore') ?? env.CELERIAC_SECURITY_CERT_STORE ?? env.CELERY_SECURITY_CERT_STORE;
  if (path) return loadCertStore(path);
  // Celery requires a store; Celeriac falls back to trusting its own certificate (a pool of peers sharing one identity).
  if (cert) return certStoreFromCertificates([{ cert, source: 'securityCertificate' }]);
  return undefined;
}

/**
 * Read and check the message-security settings (the `security` section of
 * the settings, typed by the schema, plus the environment). Throws `ConfigError` (or
 * its subclasses `CertificateError`, `KeyRingError`) for anything unusable.
 */
export function loadSecuritySettings(settings: ResolvedSettings, env: Env, acceptTypes: ReadonlySet<string>): SecuritySettings {
  const sec = settings.security;
  const digest = (str(sec, 'securityDigest') ?? env.CELERIAC_SECURITY_DIGEST ?? env.CELERY_SECURITY_DIGEST ?? 'sha256').toLowerCase().replace(/[-_]/g, '');
  if (!['sha256', 'sha384', 'sha512'].includes(digest)) {
    throw new ConfigError(`securityDigest ${JSON.stringify(digest)} is not supported`, { hint: "use sha256 (Celery's default), sha384 or sha512" });
  }
  const layout = (str(sec, 'securityAuthLayout') ?? env.CELERIAC_SECURITY_AUTH_LAYOUT ?? 'celery-5.2') as CeleryAuthLayout;
  if (layout !== 'celery-5.2' && layout !== 'celery-5.5') {
    throw new ConfigError(`securityAuthLayout ${JSON.stringify(layout)} is not supported`, { hint: 'use celery-5.2 for Celery ≤ 5.4 peers (Debian 5.2.6), celery-5.5 when every peer runs Celery ≥ 5.5' });
  }
  const key = loadKey(sec, env);
  const cert = loadCert(sec, env);
  if ((key === undefined) !== (cert === undefined)) {
    throw new ConfigError(`${key ? 'securityKey' : 'securityCertificate'} is set without ${key ? 'securityCertificate' : 'securityKey'}`, {
      hint: 'the auth signer needs both its RSA private key and the certificate issued for it',
    });
  }
  if (key && cert) {
    try {
      checkCeleryAuthSigner({ key, cert });
    } catch (err) {
      if (err instanceof ConfigError) throw err;
      throw new ConfigError(`securityKey/securityCertificate: ${(err as Error).message}`, { code: 'ERR_SIGNING' });
    }
  }
  if (settings.taskSerializer === 'auth' && !key) {
    throw new ConfigError("taskSerializer 'auth' needs securityKey and securityCertificate", {
      hint: 'set security_key / security_certificate (paths or PEM), or CELERIAC_SECURITY_KEY_FILE and CELERIAC_SECURITY_CERTIFICATE; `celeriac secrets generate rsa-cert` makes a pair',
    });
  }
  const store = loadStore(sec, env, cert);
  const acceptBodyOnlyFrom = signerList(sec, env);
  for (const id of acceptBodyOnlyFrom) {
    if (!store?.has(id)) {
      throw new ConfigError(`securityAcceptBodyOnlyFrom names signer ${JSON.stringify(id)}, which is not in the certificate store`, {
        hint: `put that signer's certificate in securityCertStore; signer ids in the store: ${JSON.stringify(store?.signerIds() ?? [])}`,
      });
    }
  }
  if (acceptTypes.has('application/data') && !store) {
    throw new ConfigError("acceptContent includes 'auth' but no certificate store is configured", {
      hint: 'set security_cert_store (a PEM file or directory of trusted signers)',
    });
  }
  const signingRing = keyRing(sec, env, 'securitySigningKeys', 'CELERIAC_SIGNING_KEYS');
  const verifyRing = keyRing(sec, env, 'securityVerifyKeys', 'CELERIAC_VERIFY_KEYS');
  let resultRing: ResultKeyRing | undefined;
  const rk = sec.resultEncryptionKeys;
  if (rk !== undefined && rk !== '') {
    if (typeof rk === 'object') resultRing = rk; // the schema let only a ResultKeyRing through
    else {
      registerSecret(rk);
      resultRing = parseResultKeyRing(rk, 'resultEncryptionKeys');
    }
  } else {
    const found = fromEnv(env, 'CELERIAC_RESULT_KEYS', true);
    if (found) resultRing = parseResultKeyRing(found.value, found.source);
  }
  const t = settings.brokerTransportOptions;
  const visibilityS = typeof t.visibilityTimeout === 'number' && t.visibilityTimeout > 0 ? t.visibilityTimeout : 3600;
  const messageTtlMs = Math.round(seconds(sec, env, 'securityMessageTtl', 'CELERIAC_SECURITY_MESSAGE_TTL', Math.max(DEFAULT_MESSAGE_TTL_S, 2 * visibilityS)) * 1000);
  const replayWindowMs = Math.round(seconds(sec, env, 'securityReplayWindow', 'CELERIAC_SECURITY_REPLAY_WINDOW', DEFAULT_REPLAY_WINDOW_S) * 1000);
  if (messageTtlMs > replayWindowMs) {
    throw new ConfigError('securityMessageTtl is longer than securityReplayWindow', {
      hint: 'workers refuse signatures that outlive the replay window; raise securityReplayWindow or lower securityMessageTtl',
    });
  }
  const rs = sec.securityReplayStore ?? env.CELERIAC_SECURITY_REPLAY_STORE ?? 'auto';
  let replayStore: ReplayStoreSetting;
  if (typeof rs === 'object') replayStore = rs; // the schema let only a ReplayStore through
  else if (rs === 'auto' || rs === 'redis' || rs === 'sqlite' || rs === 'local' || rs === 'memory') replayStore = rs;
  else throw new ConfigError(`securityReplayStore ${JSON.stringify(rs)} is not supported`, { hint: 'use auto, redis, sqlite, local or memory (or pass a ReplayStore)' });
  const rf = sec.securityReplayFile ?? env.CELERIAC_SECURITY_REPLAY_FILE ?? DEFAULT_REPLAY_FILE;
  if (typeof rf !== 'string' || rf === '') throw new ConfigError('securityReplayFile must be a file path', { hint: `e.g. ${DEFAULT_REPLAY_FILE}` });
  return {
    production: isProduction(env),
    taskSerializer: settings.taskSerializer,
    acceptTypes,
    limits: settings.decodeLimits,
    auth: { key, cert, store, digest, layout },
    signingRing,
    verifyRing,
    resultRing,
    messageTtlMs,
    replayWindowMs,
    clockSkewMs: DEFAULT_CLOCK_SKEW_MS,
    acceptBodyOnlyFrom,
    unsafeAcceptUnsigned: flag(sec, env, 'unsafeAcceptUnsigned', 'CELERIAC_UNSAFE_ACCEPT_UNSIGNED'),
    unsafeAcceptUnencryptedResults: flag(sec, env, 'unsafeAcceptUnencryptedResults', 'CELERIAC_UNSAFE_ACCEPT_UNENCRYPTED_RESULTS'),
    replayStore,
    replayFile: rf,
    brokerUrl: settings.brokerUrl,
    resultBackend: settings.resultBackend,
    keyPrefix: typeof t.globalKeyprefix === 'string' ? t.globalKeyprefix : '',
    visibilityTimeoutMs: visibilityS * 1000,
  };
}
