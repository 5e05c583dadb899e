/**
 * Message integrity for the client and the worker, built from the app
 * settings (`security-settings.ts` lists them): signing on send,
 * verification and hardened decoding on receive, replay protection, and
 * results encrypted at rest.
 *
 * ## Sending
 *
 * - `taskSerializer: 'auth'`: the body is Celery's `auth` serializer
 *   (RSA-PSS over the JSON body, layout `securityAuthLayout`), so Python
 *   workers with `accept_content=['auth']` verify it, **and** the message
 *   carries Celeriac's `celeriac_signature` header signed with the same RSA
 *   key (`rsa-pss-sha256`, key id = the Celery signer id).
 * - otherwise, with a signing ring (`CELERIAC_SIGNING_KEYS`): a JSON or
 *   msgpack body and the header signed with the ring's newest key
 *   (Ed25519 or HMAC-SHA256); with only an RSA key and certificate, the
 *   header is signed with RSA.
 * - The header's lifetime is `max(now, eta) + securityMessageTtl` (default
 *   twice the visibility timeout), so a countdown/eta, a retry delay or a
 *   visibility-timeout restore never outlives its signature. Retries,
 *   chain steps and callbacks re-sent by the worker go through
 *   `App.buildMessage` and are signed (with a fresh nonce) the same way.
 *
 * ## Receiving (the order is chosen so untrusted bytes are parsed last)
 *
 * 1. size: the body must fit `decodeLimits.maxBytes` (base64 overhead
 *    allowed for `auth`);
 * 2. content type in `acceptContent`;
 * 3. the `celeriac_signature` header, when present, is verified (body hash,
 *    content type, descriptive headers, issue/expiry window, key trusted);
 *    when absent, the message is refused as unsigned unless it is an `auth`
 *    body from a signer in `securityAcceptBodyOnlyFrom` (Python producers,
 *    the weaker mode, warned about at every start), or nothing verifies
 *    messages here (development without keys) or `unsafeAcceptUnsigned`;
 *    a lifetime longer than `securityReplayWindow` is refused;
 * 4. an `auth` body is verified against the certificate store (and its
 *    signer must be allowed), and its inner content type must be JSON or
 *    msgpack;
 * 5. the body is decoded under the limits (depth, items, `__proto__`).
 * 6. after decoding, `admit` claims the signature's nonce in the replay
 *    store (see `replay-guard.ts` for the state machine): a nonce already
 *    settled, or held by another live consumer, is refused as a replay.
 *
 * Every refusal is counted and logged as a security event (with the
 * message id and reason) and the worker dead-letters the message.
 *
 * A worker "requires signatures" as soon as anything that verifies is
 * configured (a ring, a verify ring, a certificate or a store). In
 * production (the default mode; see config/mode.ts) an app with neither signing nor
 * verification keys refuses to start unless `unsafeAcceptUnsigned`.
 */
import { createHash } from 'node:crypto';
import { celerySignerId } from '../codec/signing/index.ts';
import { DecodeError, ContentDisallowedError, ConfigError } from '../errors.ts';
import { JSON_SERIALIZER, MSGPACK_SERIALIZER, decodeByContentType, AUTH_CONTENT_TYPE } from '../codec/serializers.ts';
import { decompressBody } from '../codec/compression.ts';
import {
  CELERY_AUTH_CONTENT_ENCODING,
  certStoreVerifier,
  combineVerifiers,
  rsaMessageSigningKey,
  SIGNATURE_HEADER,
  SignatureError,
  signCeleryAuth,
  signMessage,
  verifyCeleryAuth,
  verifyMessage,
  type CeleryAuthSigner,
  type MessageSignatureClaims,
  type MessageSigningKey,
  type MessageVerifier,
} from '../codec/signing/index.ts';
import type { Env } from '../config/env.ts';
import type { ResolvedSettings } from '../config/options.ts';
import { InsecureConfigError, type Finding } from '../config/policy.ts';
import type { Logger } from '../observability/logging.ts';
import type { BodyDecoder } from '../protocol/task-message.ts';
import { parseIso } from '../protocol/time.ts';
import type { WireMessage } from '../protocol/types.ts';
import { recordSecurityEvent, type SecurityEventKind } from '../observability/security-events.ts';
import type { MessageSecurity } from './message-security-types.ts';
import { ReplayGuard } from './replay-guard.ts';
import type { ReplayStore } from '../core/replay-store.ts';
import { ENGINES, type EngineName } from '../core/schemes.ts';
import { createLocalReplayStore, createReplayStore, engineOf } from '../transport/index.ts';
import { createResultSealer } from './result-sealer.ts';
import { loadSecuritySettings, type SecuritySettings } from '../config/security-settings.ts';

export type { MessageSecurity } from './message-security-types.ts';

/** Options of {@link createMessageSecurity}. */
export interface MessageSecurityOptions {
  settings: ResolvedSettings;
  env: Env;
  logger: Logger;
  /** Accepted outer content types (from `acceptContent`, as MIME types). */
  acceptTypes: ReadonlySet<string>;
}

/** What a configured security layer does, for logs, audits and tests. Holds no key material. */
export interface MessageSecurityDescription {
  /** How outgoing messages are signed. */
  signing: 'none' | 'auth+rsa-header' | 'ed25519' | 'hmac-sha256' | 'rsa-pss-sha256';
  /** True when received messages must carry a valid signature. */
  verifying: boolean;
  /** Where replay state lives (`none` when nothing is verified). */
  replayStore: 'none' | ReplayStoreKind;
  /** True when results are encrypted at rest. */
  encryptedResults: boolean;
  /** Signer ids accepted with Celery body-only signatures. */
  bodyOnlySigners: string[];
}

/** The security layer built by {@link createMessageSecurity}. */
export interface ConfiguredMessageSecurity extends MessageSecurity {
  readonly description: MessageSecurityDescription;
  /** Signature claims of a message verified by `decodeBody` (until it is garbage-collected). */
  claimsOf(message: WireMessage): MessageSignatureClaims | undefined;
  /** The replay guard (workers with verification only). */
  readonly replayGuard: ReplayGuard | undefined;
}

/** The signature lifetime exceeds what this worker can remember (the replay window). */
export class SignatureLifetimeError extends DecodeError {
  constructor(lifetimeMs: number, windowMs: number) {
    super(`signature valid for ${Math.round(lifetimeMs / 1000)} s more, beyond the ${Math.round(windowMs / 1000)} s replay window`, {
      code: 'ERR_SIGNATURE_LIFETIME',
      hint: 'lower securityMessageTtl (and eta distance) on the sender, or raise securityReplayWindow on the workers',
    });
  }
}

/** Which security event a refused message counts as. */
export function securityEventKindOf(err: unknown): SecurityEventKind {
  if (err instanceof SignatureError) {
    switch (err.reason) {
      case 'missing-signature':
        return 'unsigned_message';
      case 'unknown-signer':
      case 'unknown-key':
      case 'signer-not-allowed':
        return 'unknown_signer';
      case 'expired-certificate':
      case 'certificate-not-yet-valid':
        return 'expired_certificate';
      case 'expired':
      case 'not-yet-valid':
        return 'replayed_message';
      default:
        return 'forged_message';
    }
  }
  if (err instanceof SignatureLifetimeError) return 'replayed_message';
  if (err instanceof ContentDisallowedError) return 'content_disallowed';
  return 'malformed_message';
}

/** Where replay nonces live: an engine's store, a machine-local file (`local`), or a store the app passed (`custom`). */
export type ReplayStoreKind = EngineName | 'local' | 'custom';

type ReplayUrls = Pick<SecuritySettings, 'brokerUrl' | 'resultBackend'>;

/**
 * The URL (and its setting) that an engine's replay store uses: for a store
 * shared across machines, the broker's when that engine serves it, else the
 * result backend's; for a file store, the broker's only; none for a store
 * kept in this process.
 */
function replayAt(sec: ReplayUrls, name: EngineName): { url: string; side: 'broker' | 'backend' } | undefined {
  const scope = ENGINES[name].replay;
  if (scope === 'process' || scope === undefined) return undefined;
  if (engineOf(sec.brokerUrl)?.name === name) return { url: sec.brokerUrl!, side: 'broker' };
  if (scope === 'shared' && engineOf(sec.resultBackend)?.name === name) return { url: sec.resultBackend!, side: 'backend' };
  return undefined;
}

/** The broker's or backend's engine when it keeps nonces for every worker of the deployment (the broker first). */
function sharedReplayEngine(sec: ReplayUrls): EngineName | undefined {
  for (const url of [sec.brokerUrl, sec.resultBackend]) {
    const e = engineOf(url);
    if (e?.replay === 'shared') return e.name;
  }
  return undefined;
}

/** The replay store kind `auto` resolves to for these settings. */
export function replayStoreKind(sec: Pick<SecuritySettings, 'replayStore' | 'brokerUrl' | 'resultBackend'>): ReplayStoreKind {
  const c = sec.replayStore;
  if (typeof c === 'object') return 'custom';
  if (c !== 'auto') return c;
  const shared = sharedReplayEngine(sec);
  if (shared) return shared;
  const broker = engineOf(sec.brokerUrl);
  if (broker?.replay === 'file') return broker.name;
  // A network broker with no shared store (RabbitMQ): per-process memory let a copy run once in every
  // prefork child (issue 20 #9); a file shared by every process on this machine closes that.
  if (sec.brokerUrl !== undefined && broker?.replay !== 'process') return 'local';
  return 'memory';
}

/** Open the replay store chosen for these settings, through the engine registry. */
async function openReplayStore(sec: SecuritySettings, settings: ResolvedSettings, logger: Logger): Promise<ReplayStore> {
  if (typeof sec.replayStore === 'object') return sec.replayStore;
  const kind = replayStoreKind(sec);
  if (kind === 'custom') throw new ConfigError('securityReplayStore is not a ReplayStore', { hint: 'use auto, redis, sqlite, local or memory (or pass a ReplayStore)' });
  if (kind === 'local') return createLocalReplayStore(sec.replayFile, { settings, logger });
  const info = ENGINES[kind];
  const at = replayAt(sec, kind);
  if (!at && info.replay !== 'process') {
    const others = Object.values(ENGINES).filter((e) => e.replay !== undefined && e.name !== kind).map((e) => e.name);
    const hint = `use auto, ${others.slice(0, -1).join(', ')}${others.length > 1 ? ' or ' : ''}${others[others.length - 1] ?? ''}`;
    throw new ConfigError(
      info.replay === 'shared'
        ? `securityReplayStore is ${kind} but neither the broker nor the result backend is ${info.title}`
        : `securityReplayStore is ${kind} but the broker is not ${info.title}`,
      { hint },
    );
  }
  return createReplayStore(kind, { url: at?.url, side: at?.side ?? 'broker', keyPrefix: sec.keyPrefix, settings, logger });
}

/** The eta of a message in ms, or undefined. */
function etaOf(message: WireMessage): number | undefined {
  const eta = message.headers?.eta;
  return typeof eta === 'string' ? parseIso(eta) : undefined;
}

/**
 * Build the security layer of an app from its settings. Throws
 * `ConfigError` (and subclasses) for unusable keys, certificates or
 * settings; a production app without signing is refused later, by
 * `startupCheck`, before the first connection.
 */
export function createMessageSecurity(options: MessageSecurityOptions): ConfiguredMessageSecurity {
  const { settings, env, logger, acceptTypes } = options;
  const sec = loadSecuritySettings(settings, env, acceptTypes);
  const { auth, limits } = sec;
  const warnings: string[] = [];

  // ── sending ──
  const authSigner: CeleryAuthSigner | undefined =
    sec.taskSerializer === 'auth' && auth.key && auth.cert ? { key: auth.key, cert: auth.cert, digest: auth.digest, layout: auth.layout } : undefined;
  const rsaHeaderKey = auth.key && auth.cert ? rsaMessageSigningKey(auth.key, auth.cert) : undefined;
  let headerKey: MessageSigningKey | undefined;
  if (authSigner) headerKey = rsaHeaderKey;
  else if (sec.signingRing?.canSign) headerKey = sec.signingRing.current();
  else headerKey = rsaHeaderKey;
  const ttlMs = sec.messageTtlMs;

  const sign = headerKey || authSigner
    ? (message: WireMessage): WireMessage => {
        const now = Date.now();
        let m = message;
        if (authSigner) {
          const body = signCeleryAuth(m.body, m.contentType, m.contentEncoding, authSigner);
          m = { ...m, contentType: AUTH_CONTENT_TYPE, contentEncoding: CELERY_AUTH_CONTENT_ENCODING, body };
        }
        if (headerKey) {
          const eta = etaOf(m);
          const base = eta !== undefined && eta > now ? eta : now;
          m = signMessage(m, headerKey, { ttlMs: base + ttlMs - now, now });
        }
        return m;
      }
    : undefined;

  // ── receiving ──
  const verifiers: MessageVerifier[] = [];
  if (sec.signingRing) verifiers.push(sec.signingRing);
  if (sec.verifyRing) verifiers.push(sec.verifyRing);
  if (auth.store) verifiers.push(certStoreVerifier(auth.store));
  const verifier = verifiers.length > 0 ? combineVerifiers(...verifiers) : undefined;
  const verifying = verifier !== undefined;
  const canSign = headerKey !== undefined;
  // Unsigned messages pass only where nothing verifies (development without keys) or when explicitly accepted.
  const acceptUnsigned = sec.unsafeAcceptUnsigned || (!verifying && !sec.production);
  const bodyOnly = sec.acceptBodyOnlyFrom;
  const authMaxBytes = Math.ceil((limits.maxBytes * 4) / 3) + 16 * 1024;
  const claims = new WeakMap<WireMessage, MessageSignatureClaims>();
  const skew = sec.clockSkewMs;

  const verifyAndDecode = (message: WireMessage): unknown => {
    const body = message.body;
    if (!Buffer.isBuffer(body)) throw new DecodeError('the message body is not bytes', { code: 'ERR_DECODE' });
    const ct = message.contentType;
    const isAuth = ct === AUTH_CONTENT_TYPE;
    const max = isAuth ? authMaxBytes : limits.maxBytes;
    if (body.length > max) throw new DecodeError(`body of ${body.length} bytes exceeds the ${max}-byte limit`, { code: 'ERR_TOO_LARGE' });
    if (!acceptTypes.has(ct)) throw new ContentDisallowedError(typeof ct === 'string' ? ct : String(ct));
    const now = Date.now();
    const headers = message.headers;
    const hasHeader = headers !== null && typeof headers === 'object' && headers[SIGNATURE_HEADER] !== undefined && headers[SIGNATURE_HEADER] !== null;
    let bodyOnlyMode = false;
    if (hasHeader && verifier) {
      const c = verifyMessage(message, verifier, { now, clockSkewMs: skew });
      if (c.exp - now > sec.replayWindowMs + skew) throw new SignatureLifetimeError(c.exp - now, sec.replayWindowMs);
      claims.set(message, c);
    } else if (!acceptUnsigned) {
      if (isAuth && bodyOnly.size > 0) bodyOnlyMode = true;
      else {
        throw new SignatureError('missing-signature', `the message has no ${SIGNATURE_HEADER} header`, {
          hint: isAuth
            ? "it carries only Celery's body signature: list its signer in securityAcceptBodyOnlyFrom to accept Python producers"
            : 'the sender must sign its messages with a key this worker trusts',
        });
      }
    }
    if (!isAuth) return decodeByContentType(body, ct, acceptTypes, limits, { compression: headers?.compression, contentEncoding: message.contentEncoding });
    if (!auth.store) throw new ContentDisallowedError(ct);
    // kombu compresses after the auth serializer signed: inflate (capped) before verifying.
    const v = verifyCeleryAuth(headers?.compression == null ? body : decompressBody(body, headers.compression, { ...limits, maxBytes: authMaxBytes }), auth.store, {
      digest: auth.digest,
      now,
      maxBytes: authMaxBytes,
      ...(bodyOnlyMode ? { allowedSigners: bodyOnly } : {}),
    });
    if (bodyOnlyMode) {
      // No nonce or expiry travels with a body-only message, but Celery signs with RSA-PSS and a random
      // salt: every send has different bytes, so the body itself names this message. An exact copy is
      // refused as a replay for the replay window (issue 20 #9); a relabel cannot be detected.
      claims.set(message, { alg: 'rsa-pss-sha256', kid: v.signerId, iat: now, exp: now + sec.replayWindowMs, nonce: `b.${createHash('sha256').update(body).digest('base64url')}` });
    }
    const inner = v.contentType === JSON_SERIALIZER.contentType ? JSON_SERIALIZER : v.contentType === MSGPACK_SERIALIZER.contentType || v.contentType === 'application/msgpack' ? MSGPACK_SERIALIZER : undefined;
    if (!inner) throw new ContentDisallowedError(v.contentType);
    return inner.decode(v.inner, limits);
  };

  const decodeBody: BodyDecoder = (message) => {
    try {
      return verifyAndDecode(message);
    } catch (err) {
      const h = message?.headers;
      const id = h && typeof h.id === 'string' ? h.id : undefined;
      const task = h && typeof h.task === 'string' ? h.task : undefined;
      const reason = err instanceof DecodeError ? err.message : 'undecodable message';
      recordSecurityEvent(securityEventKindOf(err), { messageId: id, task, reason, code: err instanceof DecodeError ? err.code : undefined }, logger);
      if (err instanceof DecodeError) throw err;
      // The decoders throw only DecodeErrors; anything else is still a refusal, never a crash.
      throw new DecodeError(`undecodable message: ${(err as Error)?.message ?? String(err)}`, { code: 'ERR_DECODE' });
    }
  };

  // ── replay ──
  const replayKind = verifying ? replayStoreKind(sec) : 'none';
  const lease = Math.max(1000, Math.min(30_000, Math.floor(sec.visibilityTimeoutMs / 2)));
  const guard = verifying ? new ReplayGuard({ store: () => openReplayStore(sec, settings, logger), leaseMs: lease, clockSkewMs: skew, logger }) : undefined;

  // ── results ──
  const resultSealer = sec.resultRing
    ? createResultSealer({ ring: sec.resultRing, limits, acceptUnencrypted: sec.unsafeAcceptUnencryptedResults, logger })
    : undefined;

  // ── warnings at every start (policy findings: `celeriac audit` reports the same ids) ──
  const warnFindings: Finding[] = [];
  if (bodyOnly.size > 0) {
    warnFindings.push({
      id: 'CEL-007', setting: 'securityAcceptBodyOnlyFrom',
      message: `securityAcceptBodyOnlyFrom accepts Celery body-only signatures from ${[...bodyOnly].map((s) => JSON.stringify(s)).join(', ')}: ` +
        'only their args and kwargs are signed — anyone who can write to the broker can relabel them (task name, id, eta, expires, retries); ' +
        `exact copies are refused as replays for the replay window (${Math.round(sec.replayWindowMs / 3_600_000)} h), not after it, since they carry no Celeriac nonce or expiry`,
      fix: 'sign Python producers\' messages with a Celeriac key ring (header signature), then remove securityAcceptBodyOnlyFrom',
    });
    // A Celeriac client signing with a listed certificate could have its messages downgraded by stripping the header.
    if (auth.cert && bodyOnly.has(celerySignerId(auth.cert))) {
      warnFindings.push({
        id: 'CEL-007', setting: 'securityAcceptBodyOnlyFrom',
        message: `securityAcceptBodyOnlyFrom lists this app's own signer ${JSON.stringify(celerySignerId(auth.cert))}: its header-signed messages can be downgraded to body-only by stripping the header`,
        fix: 'give Python producers certificates of their own and list only those',
      });
    }
  }
  if (sec.unsafeAcceptUnsigned) {
    warnFindings.push({
      id: 'CEL-007', setting: 'unsafeAcceptUnsigned',
      message: 'unsafeAcceptUnsigned is set: unsigned task messages are accepted, so anyone who can write to the broker can run any task',
      fix: 'configure signing (`celeriac secrets generate ed25519`: CELERIAC_SIGNING_KEYS on senders, CELERIAC_VERIFY_KEYS on workers) and remove unsafeAcceptUnsigned',
    });
  }
  if (verifying && replayKind === 'memory') {
    warnFindings.push({
      id: 'CEL-007', setting: 'securityReplayStore',
      message: 'replay protection is per process (no Redis broker or result backend and no SQLite broker to share nonces through): ' +
        'a replayed message delivered to another worker process is not detected; signature expiry still applies',
      fix: 'use a Redis result backend (its replay store is shared by every worker), or securityReplayStore: local for the processes of one machine',
    });
  }
  if (verifying && replayKind === 'local') {
    warnFindings.push({
      id: 'CEL-007', setting: 'securityReplayStore',
      message: `replay protection is shared by the worker processes of this machine only (${sec.replayFile}): ` +
        'a copy of a signed message delivered to a worker on another machine is not detected; signature expiry still applies',
      fix: 'use a Redis result backend: its replay store is shared by every worker of the deployment',
    });
  }
  if (resultSealer && sec.unsafeAcceptUnencryptedResults) {
    warnFindings.push({
      id: 'CEL-016', setting: 'unsafeAcceptUnencryptedResults',
      message: 'unsafeAcceptUnencryptedResults is set: plaintext result records are read as they are, so forged results written to the backend are believed',
      fix: 'remove unsafeAcceptUnencryptedResults once every worker encrypts its results',
    });
  }
  for (const f of warnFindings) warnings.push(f.message);

  const signingKind: MessageSecurityDescription['signing'] = authSigner
    ? 'auth+rsa-header'
    : headerKey
      ? (headerKey.alg as 'ed25519' | 'hmac-sha256' | 'rsa-pss-sha256')
      : 'none';

  // Pure: the caller merges these into the one policy report (all refusals of a start at once).
  const policyChecks = (): { refusals: Finding[]; warnings: Finding[] } => {
    const refusals: Finding[] = [];
    if (sec.production && !verifying && !canSign && !sec.unsafeAcceptUnsigned) {
      refusals.push({
        id: 'CEL-007', setting: 'securitySigningKeys',
        message: 'message signing is not configured (production mode): anyone who can write to the broker could run any task',
        fix: 'configure a signing ring (CELERIAC_SIGNING_KEYS on senders, CELERIAC_VERIFY_KEYS on workers; `celeriac secrets generate ed25519`) or Celery auth signing (securityKey, securityCertificate, securityCertStore) — or set unsafeAcceptUnsigned: true to accept the risk',
      });
    }
    return { refusals, warnings: warnFindings };
  };
  const startupCheck = (): void => {
    const { refusals } = policyChecks();
    if (refusals.length > 0) throw new InsecureConfigError(refusals);
  };

  return {
    ...(sign ? { sign } : {}),
    decodeBody,
    verifiesSenders: !acceptUnsigned,
    ...(guard
      ? {
          admit: async (message, request, delivery) => {
            const c = claims.get(message);
            if (!c) return undefined; // unsigned (accepted above): nothing to claim
            const reason = await guard.admit(message, c.nonce, c.exp, delivery.redelivered);
            if (reason !== undefined) {
              recordSecurityEvent('replayed_message', { messageId: request.id, task: request.task, reason, signer: c.kid, code: 'ERR_REPLAY' }, logger);
            }
            return reason;
          },
          settled: (message: WireMessage) => guard.settled(message),
          released: (message: WireMessage) => guard.released(message),
        }
      : {}),
    ...(resultSealer ? { resultSealer } : {}),
    warnings,
    startupCheck,
    policyChecks,
    // The local replay file is opened at worker start, so a path it cannot use is a start-up error, not a requeue loop.
    prepare: async () => {
      if (guard && replayKind === 'local') await guard.store();
    },
    updateCredentials: async (url: string, side: 'broker' | 'backend') => {
      // Only a store this layer opened from that URL; one not opened yet will use the new URL (settings are updated by the app).
      if (!guard || typeof sec.replayStore === 'object') return;
      const shared = sharedReplayEngine(sec);
      if (shared === undefined || replayAt(sec, shared)?.side !== side) return;
      if (side === 'broker') sec.brokerUrl = url;
      else sec.resultBackend = url;
      const store = await guard.openedStore();
      if (store?.kind === shared) await store.updateCredentials?.(url);
    },
    close: async () => {
      await guard?.close();
    },
    description: {
      signing: signingKind,
      verifying,
      replayStore: replayKind,
      encryptedResults: resultSealer !== undefined,
      bodyOnlySigners: [...bodyOnly],
    },
    claimsOf: (message: WireMessage) => claims.get(message),
    replayGuard: guard,
  } satisfies ConfiguredMessageSecurity;
}
