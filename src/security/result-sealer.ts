/**
 * Results encrypted at rest: the `RecordSealer` the result store uses when
 * a result key ring (`resultEncryptionKeys` / `CELERIAC_RESULT_KEYS`) is
 * configured. AES-256-GCM with a per-task key and the task id, status and
 * `date_done` as associated data (see `codec/encryption.ts`), so a record
 * copied to another task id, or edited, fails to open.
 *
 * Python Celery clients cannot read encrypted results: they see the true
 * `status`, `task_id` and `date_done`, a `null` result for SUCCESS, and an
 * `EncryptedResult` exception for FAILURE/RETRY/REVOKED. Use a Celeriac
 * client to read them, or leave the ring unset for results Python reads.
 *
 * By default a store with a ring refuses plaintext records too, so nobody
 * who can write to the backend can plant a forged, unencrypted result;
 * `unsafeAcceptUnencryptedResults` relaxes that for mixed pools in which
 * Python workers write plaintext results.
 */
import type { RecordSealer } from '../client/results.ts';
import { decryptResult, DecryptError, encryptResult, isEncryptedResult, type ResultKeyRing } from '../codec/encryption.ts';
import type { DecodeLimits } from '../codec/limits.ts';
import type { Logger } from '../observability/logging.ts';
import type { ResultMeta } from '../protocol/result-meta.ts';
import { recordSecurityEvent } from '../observability/security-events.ts';

/** Options of {@link createResultSealer}. */
export interface ResultSealerOptions {
  ring: ResultKeyRing;
  limits: DecodeLimits;
  /** Read plaintext records as they are (default false: refused with `DecryptError('not-encrypted')`). */
  acceptUnencrypted?: boolean;
  logger?: Logger;
}

/** A `RecordSealer` over a result key ring; failures are counted as `decrypt_failure` security events. */
export function createResultSealer(options: ResultSealerOptions): RecordSealer {
  const { ring, limits, logger } = options;
  const acceptUnencrypted = options.acceptUnencrypted ?? false;
  return {
    seal: (plain: Buffer, meta: ResultMeta): Buffer =>
      encryptResult(plain, { taskId: meta.task_id, status: String(meta.status), dateDone: typeof meta.date_done === 'string' ? meta.date_done : null }, ring),
    // "Sealed" routes a record through `open`: with plaintext refused, every record goes there.
    isSealed: (payload: Buffer): boolean => !acceptUnencrypted || isEncryptedResult(payload),
    open: (payload: Buffer, taskId: string): Buffer => {
      try {
        return decryptResult(payload, taskId, ring, limits);
      } catch (err) {
        const reason = err instanceof DecryptError ? err.reason : 'malformed';
        recordSecurityEvent('decrypt_failure', { taskId, reason, code: err instanceof DecryptError ? err.code : 'ERR_DECRYPT' }, logger);
        throw err;
      }
    },
  };
}
