/**
 * Control that can be trusted (issue #16 item 4, CEL-022): the guard every
 * remote-control (pidbox) message passes before a worker obeys it, the
 * signer operators' control messages go through, and the audit log of both
 * sides of every command.
 *
 * ## Admission (worker side), in this order
 *
 * 1. the method is a command name (else refused as malformed);
 * 2. the method is in the worker's allow-list `workerControlAllow`
 *    (default: the read-only inspect commands);
 * 3. a `celeriac_signature` header, when present and this worker verifies
 *    signatures, must verify with the deployment's keys (the same rings and
 *    certificate store as task messages, `codec/signing/`): a tampered,
 *    forged, expired or unknown-key message is refused even for a command
 *    that is allowed unsigned; its lifetime may not exceed the control
 *    queue's message TTL (300 s) plus the clock skew;
 * 4. its nonce must be new **to this worker**: a control message is
 *    broadcast to every worker, so each remembers the nonces it obeyed
 *    until they expire (in memory; also in a `ReplayStore` when one is
 *    given, so a restart does not forget them);
 * 5. an unsigned message passes only for a command in
 *    `workerControlAllowUnsigned` (default: the read-only ones), or —
 *    where nothing verifies (development without keys, or production with
 *    `unsafeAcceptUnsigned`) — for any allowed command.
 *
 * Each refusal is counted and logged as a `control_denied` security event
 * (method, reason, signer; never arguments), and each admission decision
 * is one audit line. `who` is the signature's key id (ring key id, or the
 * Celery signer id of an X.509 certificate), or `unsigned`.
 *
 * ## Audit
 *
 * `admit` writes the line of the command itself (allowed or refused), so no
 * command goes unrecorded; the caller writes the answer's line with
 * `audit({ kind: 'reply', … })`. Lines go to `workerControlAuditLog`
 * (`control-audit-log.ts`: append-only JSON lines, mode 0600) or, when it
 * is unset, to the worker's log at info level. Arguments and replies are
 * redacted (`config/redact.ts`) and bounded. An allowed command whose
 * audit line cannot be written is refused (fail closed).
 */
import { hostname as osHostname } from 'node:os';
import {
  certStoreVerifier,
  combineVerifiers,
  rsaMessageSigningKey,
  SIGNATURE_HEADER,
  SignatureError,
  signMessage,
  verifyMessage,
  type MessageSigningKey,
  type MessageVerifier,
} from '../codec/signing/index.ts';
import { resolveControlSettings, type ControlSettings } from '../config/control-settings.ts';
import type { Env } from '../config/env.ts';
import type { ResolvedSettings } from '../config/options.ts';
import { redactAll, redactValue } from '../config/redact.ts';
import { loadSecuritySettings, type SecuritySettings } from '../config/security-settings.ts';
import { CONTROL_QUEUE_TTL_MS } from '../core/broker.ts';
import type { ReplayStore } from '../core/replay-store.ts';
import type { Logger } from '../observability/logging.ts';
import { recordSecurityEvent } from '../observability/security-events.ts';
import type { WireMessage } from '../protocol/types.ts';
import { openAuditLog, type AuditLogFile } from './control-audit-log.ts';

/** Lifetime of a control message's signature, ms: the control queue's message TTL (a command may wait that long). */
export const CONTROL_SIGNATURE_TTL_MS = CONTROL_QUEUE_TTL_MS;
/** Most nonces a guard remembers at once; beyond, signed commands are refused until older nonces expire. */
export const CONTROL_MAX_NONCES = 100_000;
/** Longest JSON of arguments or a reply kept in an audit line, characters. */
export const AUDIT_VALUE_MAX_CHARS = 2048;

/** A control message as delivered to a worker: the wire message (raw body, headers, properties) and its decoded body. */
export interface ControlMessage {
  /** As delivered (`BroadcastDelivery.message`): the body bytes and headers the signature covers. */
  readonly message: WireMessage;
  /** The decoded body: `method`, `arguments`, `destination`, `reply_to`, `ticket`, … (for the audit line). */
  readonly body?: Readonly<Record<string, unknown>> | undefined;
}

/** The guard's decision. */
export type ControlAdmission = { allowed: true; who: string } | { allowed: false; reason: string };

/** One audit entry written by the caller (the answer to a command, usually). */
export interface ControlAuditEntry {
  kind: 'command' | 'reply';
  method: string;
  /** Key id, certificate signer id, or `unsigned` (from `admit`). */
  who?: string;
  /** The command's arguments (redacted and bounded before writing). */
  arguments?: unknown;
  /** Celery's `ticket` (correlates command and answer). */
  ticket?: string;
  outcome: 'allowed' | 'refused' | 'answered' | 'failed';
  reason?: string;
  /** The reply or a summary of it (redacted and bounded before writing). */
  reply?: unknown;
}

/** Options of {@link createControlGuard}. */
export interface ControlGuardOptions {
  settings: ResolvedSettings;
  /** Default `process.env`. */
  env?: Env;
  logger: Logger;
  /** The worker's node name (`celery@host`) for audit lines and nonce scope; default the host name. */
  hostname?: string;
  /** Loaded security settings, when the caller has them already (else loaded from `settings`). */
  security?: SecuritySettings;
  /** Also remember obeyed nonces here (per worker), so a restart does not forget them. */
  replayStore?: ReplayStore;
  /** Clock, ms since the epoch (tests). */
  now?: () => number;
}

/** What the guard enforces, for logs and tests. Holds no key material. */
export interface ControlGuardDescription {
  /** Signatures are verified (a ring, a verify ring or a certificate store is configured). */
  verifying: boolean;
  /** `sign` adds a signature (a signing key is configured). */
  canSign: boolean;
  allow: string[];
  allowUnsigned: string[];
  /** The audit file, or `log` (the worker's log). */
  auditTo: string;
}

/** The guard built by {@link createControlGuard}. */
export interface ControlGuard {
  /** Decide whether this worker obeys `message` (call it for every control message addressed to this worker, before dispatch). Writes the command's audit line. */
  admit(message: ControlMessage, method: string): Promise<ControlAdmission>;
  /** Sign an outgoing control message (operators' side); returned unchanged when no signing key is configured (see `description.canSign`). */
  sign(message: WireMessage): WireMessage;
  /** Write one audit line (the answer to a command). Never throws. */
  audit(entry: ControlAuditEntry): void;
  readonly description: ControlGuardDescription;
  /** Close the audit file; the replay store given stays the caller's to close. */
  close(): Promise<void>;
}

const METHOD_RE = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;

/** Redacted, bounded copy of a value for an audit line. */
export function boundedAuditValue(value: unknown, max = AUDIT_VALUE_MAX_CHARS): unknown {
  if (value === undefined) return undefined;
  const red = redactValue(value);
  let json: string;
  try {
    json = JSON.stringify(red, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : Buffer.isBuffer(v) ? `<${v.length} bytes>` : v)) ?? 'null';
  } catch {
    return '[unserializable]';
  }
  if (json.length <= max) return JSON.parse(json) as unknown;
  return `${json.slice(0, max)}…[cut]`;
}

/** The key that signs control messages: the task signing ring's current key, else the Celery `auth` key and certificate. */
function controlSigningKey(sec: SecuritySettings): MessageSigningKey | undefined {
  if (sec.signingRing?.canSign) return sec.signingRing.current();
  if (sec.auth.key && sec.auth.cert) return rsaMessageSigningKey(sec.auth.key, sec.auth.cert);
  return undefined;
}

function signerFor(key: MessageSigningKey | undefined, now: () => number): (message: WireMessage) => WireMessage {
  return (message) => (key ? signMessage(message, key, { ttlMs: CONTROL_SIGNATURE_TTL_MS, now: now() }) : message);
}

/**
 * The operators' side alone: signs outgoing control messages with the keys
 * that sign tasks (returned unchanged when none is configured). Opens no
 * audit log and enforces nothing; `app.control` uses it.
 */
export function createControlSigner(options: { security: SecuritySettings; now?: () => number }): (message: WireMessage) => WireMessage {
  return signerFor(controlSigningKey(options.security), options.now ?? Date.now);
}

/** Build the control guard of a worker or an operator's client from the app settings. Throws `ConfigError` for unusable keys, lists or audit file. */
export function createControlGuard(options: ControlGuardOptions): ControlGuard {
  const env = options.env ?? process.env;
  const { logger } = options;
  const node = options.hostname ?? osHostname();
  const now = options.now ?? Date.now;
  const sec = options.security ?? loadSecuritySettings(options.settings, env, new Set(['application/json']));
  const control: ControlSettings = resolveControlSettings(options.settings.security, env);

  const verifiers: MessageVerifier[] = [];
  if (sec.signingRing) verifiers.push(sec.signingRing);
  if (sec.verifyRing) verifiers.push(sec.verifyRing);
  if (sec.auth.store) verifiers.push(certStoreVerifier(sec.auth.store));
  const verifier = verifiers.length > 0 ? combineVerifiers(...verifiers) : undefined;
  const key = controlSigningKey(sec);
  const skew = sec.clockSkewMs;

  const file: AuditLogFile | undefined = control.auditLog ? openAuditLog(control.auditLog) : undefined;
  const nonces = new Map<string, number>(); // nonce → forget after (ms)
  let closed = false;

  const write = (entry: Record<string, unknown>): void => {
    const line = { time: new Date(now()).toISOString(), hostname: node, ...entry };
    if (file) file.append(line);
    else logger.info({ controlAudit: line }, `control ${String(entry.kind)} ${String(entry.method)}: ${String(entry.outcome)}`);
  };

  const audit = (entry: ControlAuditEntry): void => {
    try {
      write({
        kind: entry.kind,
        who: entry.who ?? 'unsigned',
        method: String(entry.method).slice(0, 64),
        ...(entry.ticket !== undefined ? { ticket: String(entry.ticket).slice(0, 64) } : {}),
        ...(entry.arguments !== undefined ? { arguments: boundedAuditValue(entry.arguments) } : {}),
        outcome: entry.outcome,
        ...(entry.reason !== undefined ? { reason: redactAll(entry.reason).slice(0, 500) } : {}),
        ...(entry.reply !== undefined ? { reply: boundedAuditValue(entry.reply) } : {}),
      });
    } catch (err) {
      logger.error({ err }, 'control audit: could not write an audit line');
    }
  };

  const prune = (t: number): void => {
    for (const [n, until] of nonces) if (until <= t) nonces.delete(n);
  };

  /** Refuse: count, log (no arguments), audit. */
  const refuse = (m: ControlMessage, method: string, who: string, reason: string, code: string): ControlAdmission => {
    recordSecurityEvent('control_denied', { reason, method: method.slice(0, 64), signer: who, code, worker: node, id: 'CEL-022' }, logger);
    audit({ kind: 'command', method, who, arguments: m.body?.arguments, ticket: ticketOf(m), outcome: 'refused', reason });
    return { allowed: false, reason };
  };

  const admit = async (m: ControlMessage, method: string): Promise<ControlAdmission> => {
    if (closed) return { allowed: false, reason: 'the control guard is closed' };
    if (typeof method !== 'string' || !METHOD_RE.test(method)) {
      return refuse(m, typeof method === 'string' ? method.replace(/[^\w]/g, '?') : 'invalid', 'unsigned', 'not a control command name', 'ERR_CONTROL_MALFORMED');
    }
    const wire = m.message;
    const headers = wire?.headers;
    const signed = headers !== null && typeof headers === 'object' && headers[SIGNATURE_HEADER] !== undefined && headers[SIGNATURE_HEADER] !== null;
    let who = 'unsigned';
    let claimed: { nonce: string; exp: number } | undefined;
    if (signed && verifier) {
      const t = now();
      try {
        const c = verifyMessage(wire, verifier, { now: t, clockSkewMs: skew });
        who = c.kid;
        if (c.exp - t > CONTROL_SIGNATURE_TTL_MS + skew) {
          return refuse(m, method, who, `signature valid for ${Math.round((c.exp - t) / 1000)} s, longer than a control message may live (${CONTROL_SIGNATURE_TTL_MS / 1000} s)`, 'ERR_CONTROL_LIFETIME');
        }
        claimed = { nonce: c.nonce, exp: c.exp };
      } catch (err) {
        const reason = err instanceof SignatureError ? `bad signature: ${err.message}` : 'bad signature';
        const code = err instanceof SignatureError ? `ERR_CONTROL_${err.reason.toUpperCase().replace(/-/g, '_')}` : 'ERR_CONTROL_SIGNATURE';
        return refuse(m, method, 'unverified', reason, code);
      }
    }
    if (!control.allow.has(method)) {
      return refuse(m, method, who, `command ${method} is not allowed on this worker (workerControlAllow)`, 'ERR_CONTROL_NOT_ALLOWED');
    }
    if (!claimed && verifier && !control.allowUnsigned.has(method)) {
      return refuse(m, method, who, `unsigned ${method} refused: this worker obeys it only when signed (workerControlAllowUnsigned)`, 'ERR_CONTROL_UNSIGNED');
    }
    if (claimed) {
      const t = now();
      // Expired nonces are dropped every 1024 entries (and when full), so memory follows the command rate.
      if (nonces.size >= CONTROL_MAX_NONCES || (nonces.size > 0 && nonces.size % 1024 === 0)) prune(t);
      const until = nonces.get(claimed.nonce);
      if (until !== undefined && until > t) return refuse(m, method, who, 'replayed control message: this worker already received this signature nonce', 'ERR_CONTROL_REPLAY');
      if (nonces.size >= CONTROL_MAX_NONCES) return refuse(m, method, who, 'too many recent control messages to remember', 'ERR_CONTROL_FLOOD');
      const forgetAt = claimed.exp + skew;
      nonces.set(claimed.nonce, forgetAt);
      if (options.replayStore) {
        const scoped = `control:${node}:${claimed.nonce}`;
        try {
          const r = await options.replayStore.claim(scoped, node, 1000);
          if (r.state !== 'claimed') return refuse(m, method, who, 'replayed control message: this worker already received this signature nonce', 'ERR_CONTROL_REPLAY');
          await options.replayStore.settle(scoped, Math.max(1000, forgetAt - now()));
        } catch (err) {
          logger.error({ err }, 'control guard: the replay store failed; refusing the command');
          return refuse(m, method, who, 'replay store unavailable', 'ERR_CONTROL_REPLAY_STORE');
        }
      }
    }
    try {
      write({ kind: 'command', who, method, ...ticketField(m), arguments: boundedAuditValue(m.body?.arguments), outcome: 'allowed' });
    } catch (err) {
      logger.error({ err }, 'control audit: could not write an audit line; refusing the command');
      recordSecurityEvent('control_denied', { reason: 'audit log unavailable', method, signer: who, code: 'ERR_CONTROL_AUDIT', worker: node, id: 'CEL-022' }, logger);
      return { allowed: false, reason: 'audit log unavailable' };
    }
    return { allowed: true, who };
  };

  const sign = signerFor(key, now);

  return {
    admit,
    sign,
    audit,
    description: {
      verifying: verifier !== undefined,
      canSign: key !== undefined,
      allow: [...control.allow].sort(),
      allowUnsigned: [...control.allowUnsigned].sort(),
      auditTo: file ? file.path : 'log',
    },
    close: async () => {
      if (closed) return;
      closed = true;
      file?.close();
      nonces.clear();
    },
  };
}

function ticketOf(m: ControlMessage): string | undefined {
  const t = m.body?.ticket;
  return typeof t === 'string' ? t : undefined;
}

function ticketField(m: ControlMessage): { ticket?: string } {
  const t = ticketOf(m);
  return t === undefined ? {} : { ticket: t.slice(0, 64) };
}
