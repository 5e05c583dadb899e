/**
 * Typed errors of message signing. None of them ever carries key material:
 * messages name key ids, signer ids (public certificate data), files and
 * line numbers only.
 */
import { CeleriacError, ConfigError, DecodeError } from '../../errors.ts';

/**
 * Why a signed message was refused. Stable strings, meant for logs,
 * counters and dead-letter records.
 *
 * - `missing-signature`: the message carries no signature where one is required.
 * - `malformed`: the signature container cannot be parsed.
 * - `unknown-signer`: Celery `auth` body signed by a certificate that is not in the store.
 * - `unknown-key`: Celeriac header names a key id (for that algorithm) the verifier does not hold.
 * - `signer-not-allowed`: the signer is in the store but not in the allowed set.
 * - `expired-certificate` / `certificate-not-yet-valid`: the signer's certificate is outside its validity window now.
 * - `unsupported-algorithm`: an algorithm or digest Celeriac refuses.
 * - `bad-signature`: the signature does not verify (forged or tampered).
 * - `expired` / `not-yet-valid`: the Celeriac header's `exp`/`iat` window excludes now.
 */
export type SignatureFailure =
  | 'missing-signature'
  | 'malformed'
  | 'unknown-signer'
  | 'unknown-key'
  | 'signer-not-allowed'
  | 'expired-certificate'
  | 'certificate-not-yet-valid'
  | 'unsupported-algorithm'
  | 'bad-signature'
  | 'expired'
  | 'not-yet-valid';

/**
 * A signed message (Celery `auth` body or Celeriac signature header) was
 * refused. `reason` is the short code; `message` explains it.
 */
export class SignatureError extends DecodeError {
  /** Short code of the failure. */
  declare readonly reason: SignatureFailure;

  constructor(reason: SignatureFailure, detail: string, options?: { hint?: string; cause?: unknown }) {
    super(reason, { code: 'ERR_SIGNATURE', ...options });
    // DecodeError uses its first argument both as message and reason; keep the
    // code in `reason` and a readable sentence in `message`.
    this.message = options?.hint ? `${detail} (${reason}) — ${options.hint}` : `${detail} (${reason})`;
  }
}

/** Signing could not be done (a verify-only key, a key/certificate mismatch, an unsigned-able body). */
export class SigningError extends CeleriacError {
  constructor(message: string, options?: { hint?: string; cause?: unknown }) {
    super('ERR_SIGNING', message, options);
  }
}

/**
 * Why a certificate or certificate store was refused at load time.
 */
export type CertificateFailure =
  | 'unreadable'
  | 'no-certificate'
  | 'private-key-in-store'
  | 'invalid-certificate'
  | 'unsupported-key'
  | 'weak-key'
  | 'expired-certificate'
  | 'certificate-not-yet-valid'
  | 'duplicate-signer'
  | 'empty-store'
  /** Another user could change the store (its files or directory): they could add their own signer. */
  | 'unsafe-file';

/** A certificate (or the certificate store) cannot be used. Raised at start-up, so it is a configuration error. */
export class CertificateError extends ConfigError {
  /** Short code of the failure. */
  readonly reason: CertificateFailure;

  constructor(reason: CertificateFailure, message: string, options?: { hint?: string; cause?: unknown }) {
    super(message, { ...options, code: 'ERR_CERTIFICATE' });
    this.reason = reason;
  }
}

/** A key ring text (signing keys or result-encryption keys) could not be parsed or is unsafe. */
export class KeyRingError extends ConfigError {
  constructor(message: string, options?: { hint?: string; cause?: unknown }) {
    super(message, { ...options, code: 'ERR_KEY_RING' });
  }
}
