/**
 * Security events (CEL-021): one counter per kind, one structured log line
 * per event, and listeners for the dashboard's audit view and metrics.
 * Fields carry the host, the reason and ids — never a secret: every string
 * passes through `redactAll`, and fields named like secrets are dropped.
 */
import type { Logger } from 'pino';
import { isSecretKey, redactAll } from '../config/redact.ts';

/** Kinds of security events. Add new kinds here, so the list stays the one inventory. */
export const SECURITY_EVENT_KINDS = [
  'auth_failure', // broker/backend refused our credentials
  'tls_failure', // certificate or handshake problem
  'policy_warning', // an unsafe… override accepted an insecure setting
  'policy_refusal', // start-up refused an insecure setting
  'forged_message', // signature did not verify
  'unsigned_message', // unsigned message where signing is required
  'unknown_signer', // signer not in the key ring / cert store
  'replayed_message', // outside the replay window or already seen
  'expired_certificate', // signing/TLS certificate expired or not yet valid
  'decrypt_failure', // encrypted result could not be decrypted/authenticated
  'content_disallowed', // content type not in acceptContent
  'malformed_message', // message over the decoding limits, not decodable, or carrying prototype keys
  'control_denied', // remote-control command not allowed or not signed
  'login_failure', // dashboard login failed
  'access_denied', // dashboard role did not allow an action
  'csrf_rejected', // dashboard request failed the CSRF check
  'rate_limited', // a client hit a submission or login limit
  'secret_reloaded', // credentials or keys re-read (SIGHUP)
] as const;

/** One of {@link SECURITY_EVENT_KINDS}. */
export type SecurityEventKind = (typeof SECURITY_EVENT_KINDS)[number];

/** Structured fields of an event. Keys named like secrets (`password`, `token`, `key`, …) are dropped. */
export interface SecurityEventFields {
  /** Remote host (broker, backend) or client address; no credentials. */
  host?: string;
  /** Short human reason, e.g. `wrong username or password`. */
  reason?: string;
  /** Setting involved (`brokerUrl`, `acceptContent`, …). */
  setting?: string;
  /** Mitigation id (`CEL-003`). */
  id?: string;
  taskId?: string;
  messageId?: string;
  signer?: string;
  user?: string;
  remoteAddress?: string;
  /** Error code (`WRONGPASS`, `CERT_HAS_EXPIRED`, …). */
  code?: string;
  [extra: string]: string | number | boolean | undefined;
}

/** A recorded event as logged and passed to listeners. */
export interface SecurityEvent {
  kind: SecurityEventKind;
  /** ISO timestamp. */
  at: string;
  fields: Readonly<Record<string, string | number | boolean>>;
}

const ERROR_KINDS = new Set<SecurityEventKind>(['forged_message', 'unknown_signer', 'replayed_message', 'control_denied']);
const INFO_KINDS = new Set<SecurityEventKind>(['secret_reloaded']);

const counters = new Map<SecurityEventKind, number>();
const listeners = new Set<(e: SecurityEvent) => void>();

function clean(fields: SecurityEventFields): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined || isSecretKey(k)) continue;
    out[k] = typeof v === 'string' ? redactAll(v) : v;
  }
  return out;
}

/**
 * Count an event, log it (warn; error for forged/replayed/unknown-signer
 * messages and denied control commands; info for reloads) with
 * `securityEvent: kind` and the cleaned fields, and notify listeners.
 */
export function recordSecurityEvent(kind: SecurityEventKind, fields: SecurityEventFields = {}, logger?: Pick<Logger, 'warn' | 'error' | 'info'>): SecurityEvent {
  counters.set(kind, (counters.get(kind) ?? 0) + 1);
  const event: SecurityEvent = { kind, at: new Date().toISOString(), fields: Object.freeze(clean(fields)) };
  if (logger) {
    const line = { securityEvent: kind, ...event.fields };
    const msg = `security event ${kind}${event.fields.reason ? `: ${String(event.fields.reason)}` : ''}`;
    if (ERROR_KINDS.has(kind)) logger.error(line, msg);
    else if (INFO_KINDS.has(kind)) logger.info(line, msg);
    else logger.warn(line, msg);
  }
  for (const l of listeners) {
    try {
      l(event);
    } catch {
      // A broken listener must not break the code path that reported the event.
    }
  }
  return event;
}

/** Snapshot of the counters: kind → count (kinds never seen are absent). */
export function securityCounters(): Record<string, number> {
  return Object.fromEntries(counters);
}

/** Subscribe to events; returns the unsubscribe function. */
export function onSecurityEvent(listener: (e: SecurityEvent) => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/** Reset counters and listeners (tests only). */
export function resetSecurityEvents(): void {
  counters.clear();
  listeners.clear();
}

/** What a failed connection was about. */
export interface ConnectionErrorClass {
  kind: 'auth' | 'tls' | 'network';
  /** Short reason, safe to log (never taken from the server's text). */
  reason: string;
  /** What to do about it. */
  hint: string;
  /** The recognised code (`WRONGPASS`, `CERT_HAS_EXPIRED`, `ECONNREFUSED`, …), if any. */
  code: string | undefined;
}

const TLS_CODES: Record<string, [string, string]> = {
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: ['the server certificate is not signed by a trusted CA', 'give the CA that signed it with ssl_ca_certs (brokerUseSsl/redisBackendUseSsl or the URL)'],
  UNABLE_TO_GET_ISSUER_CERT: ['the issuer of the server certificate is unknown', 'give the full CA chain with ssl_ca_certs'],
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: ['the issuer of the server certificate is not trusted', 'give the CA that signed it with ssl_ca_certs'],
  SELF_SIGNED_CERT_IN_CHAIN: ['the server certificate chain ends in an untrusted self-signed CA', 'give that CA with ssl_ca_certs'],
  DEPTH_ZERO_SELF_SIGNED_CERT: ['the server presents a self-signed certificate', 'give that certificate as the CA with ssl_ca_certs, or issue the server a certificate from your CA'],
  CERT_HAS_EXPIRED: ['the server certificate has expired', 'renew the server certificate'],
  CERT_NOT_YET_VALID: ['the server certificate is not valid yet', 'check the clocks of client and server, or the certificate dates'],
  CERT_SIGNATURE_FAILURE: ['the server certificate signature is invalid', 'reissue the server certificate'],
  CERT_REVOKED: ['the server certificate is revoked', 'issue a new server certificate'],
  CERT_UNTRUSTED: ['the server certificate is not trusted', 'give the CA that signed it with ssl_ca_certs'],
  INVALID_CA: ['a CA certificate in the chain is not a valid CA', 'check the chain: intermediate certificates need basicConstraints CA:true'],
  ERR_TLS_CERT_ALTNAME_INVALID: ['the server certificate does not match the host name', 'connect with the name in the certificate, or reissue it with this host in subjectAltName'],
  ERR_SSL_WRONG_VERSION_NUMBER: ['the server did not answer with TLS', 'the port may be a plaintext port: use the TLS port, or check that the server has TLS enabled'],
  ERR_SSL_TLSV1_ALERT_UNKNOWN_CA: ['the server does not trust our client certificate', 'use a client certificate signed by a CA the server trusts'],
  ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED: ['the server requires a client certificate', 'set ssl_certfile and ssl_keyfile'],
  ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE: ['the server requires a client certificate', 'set ssl_certfile and ssl_keyfile'],
  ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE: ['the TLS handshake failed (no common protocol or cipher, or a client certificate is required)', 'check TLS versions and client certificate settings on both sides'],
  ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION: ['the server does not support TLS 1.2 or newer', 'upgrade the server TLS configuration'],
  ERR_SSL_UNSUPPORTED_PROTOCOL: ['the server offered an outdated TLS version', 'upgrade the server TLS configuration to TLS 1.2 or newer'],
  ERR_SSL_TLSV1_ALERT_DECRYPT_ERROR: ['the TLS handshake failed (key mismatch)', 'check that certificate and key belong together'],
  ERR_SSL_TLSV1_ALERT_BAD_CERTIFICATE: ['the server rejected our client certificate', 'check the client certificate'],
  ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE: ['the server rejected our client certificate', 'check the client certificate'],
  ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED: ['the server says our client certificate has expired', 'renew the client certificate'],
  ERR_TLS_HANDSHAKE_TIMEOUT: ['the TLS handshake timed out', 'check that the port speaks TLS'],
};

const NETWORK_HINTS: Record<string, [string, string]> = {
  ECONNREFUSED: ['connection refused', 'check host and port, and that the server runs'],
  ENOTFOUND: ['host name not found', 'check the host name'],
  EAI_AGAIN: ['host name lookup failed temporarily', 'check DNS'],
  ETIMEDOUT: ['connection timed out', 'check host, port and firewalls'],
  EHOSTUNREACH: ['host unreachable', 'check the network route to the host'],
  ENETUNREACH: ['network unreachable', 'check the network'],
  ECONNRESET: ['connection reset by the server', 'if the server requires TLS, use rediss:// or amqps://; otherwise check the server logs'],
  EPIPE: ['connection closed by the server', 'check the server logs'],
};

function errorParts(err: unknown, depth = 0): { code: string | undefined; message: string }[] {
  if (depth > 5 || err === null || err === undefined) return [];
  if (typeof err === 'string') return [{ code: undefined, message: err }];
  if (typeof err !== 'object') return [];
  const e = err as { code?: unknown; message?: unknown; cause?: unknown; errors?: unknown; replyCode?: unknown };
  const code = typeof e.code === 'string' ? e.code : typeof e.code === 'number' ? String(e.code) : typeof e.replyCode === 'number' ? String(e.replyCode) : undefined;
  const parts = [{ code, message: typeof e.message === 'string' ? e.message : '' }];
  parts.push(...errorParts(e.cause, depth + 1));
  if (Array.isArray(e.errors)) for (const x of e.errors) parts.push(...errorParts(x, depth + 1));
  return parts;
}

/**
 * Classify a connection error from ioredis, amqplib, pg or Node's tls/net
 * into auth / tls / network with a fixed, secret-free reason and a hint.
 * Looks through `cause` chains and `AggregateError.errors`.
 */
export function classifyConnectionError(err: unknown): ConnectionErrorClass {
  const parts = errorParts(err);
  // Authentication first: the most actionable answer.
  for (const { code, message } of parts) {
    if (/^\s*WRONGPASS\b/.test(message) || /invalid password|invalid username-password/i.test(message)) {
      return { kind: 'auth', reason: 'wrong username or password', hint: 'check the credentials in the URL (or its secret file)', code: 'WRONGPASS' };
    }
    if (/^\s*NOAUTH\b/.test(message)) {
      return { kind: 'auth', reason: 'the server requires authentication', hint: 'put the user and password in the URL, e.g. rediss://user:${file:/run/secrets/pw}@host:6379/0', code: 'NOAUTH' };
    }
    if (/^\s*NOPERM\b/.test(message)) {
      return { kind: 'auth', reason: 'the user lacks a permission (Redis ACL)', hint: 'grant the commands and key patterns from `celeriac secrets generate redis-acl`', code: 'NOPERM' };
    }
    if (/AUTH\b.*called without any password configured/i.test(message)) {
      return { kind: 'auth', reason: 'the server has no password configured but one was sent', hint: 'configure requirepass or an ACL user on the server (a broker without authentication is refused)', code: 'ERR_AUTH_NOT_CONFIGURED' };
    }
    if (/ACCESS[_-]REFUSED/.test(message) || code === '403') {
      return { kind: 'auth', reason: 'the broker refused the login', hint: 'check user and password, and that the user may access this vhost', code: 'ACCESS_REFUSED' };
    }
    if (/NOT[_-]ALLOWED/.test(message) || code === '530') {
      return { kind: 'auth', reason: 'the user may not access this virtual host', hint: 'rabbitmqctl set_permissions -p <vhost> <user> …, or fix the vhost in the URL', code: 'NOT_ALLOWED' };
    }
    if (/password authentication failed|no pg_hba\.conf entry/i.test(message) || code === '28P01' || code === '28000') {
      return { kind: 'auth', reason: 'the database refused the login', hint: 'check user and password, and pg_hba.conf', code: code ?? '28P01' };
    }
  }
  for (const { code, message } of parts) {
    const known = code ? TLS_CODES[code] : undefined;
    if (known && code) return { kind: 'tls', reason: known[0], hint: known[1], code };
    if (/wrong version number/i.test(message)) {
      const [reason, hint] = TLS_CODES.ERR_SSL_WRONG_VERSION_NUMBER!;
      return { kind: 'tls', reason, hint, code: 'ERR_SSL_WRONG_VERSION_NUMBER' };
    }
    if (/before secure TLS connection was established/i.test(message)) {
      return { kind: 'tls', reason: 'the server closed the connection during the TLS handshake', hint: 'the port may not speak TLS, or the server rejected our client certificate', code: code ?? 'ECONNRESET' };
    }
    if (code === 'EPROTO' || (code?.startsWith('ERR_SSL_') ?? false) || (code?.startsWith('ERR_TLS_') ?? false)) {
      return { kind: 'tls', reason: 'the TLS handshake failed', hint: 'check that the port speaks TLS, TLS versions and certificates on both sides', code };
    }
  }
  for (const { code } of parts) {
    const known = code ? NETWORK_HINTS[code] : undefined;
    if (known) return { kind: 'network', reason: known[0], hint: known[1], code };
  }
  const code = parts.find((p) => p.code)?.code;
  return { kind: 'network', reason: 'connection failed', hint: 'check host, port and that the server runs', code };
}
