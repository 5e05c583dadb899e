/**
 * Where revoked task ids are kept so that a restarted worker, or another
 * worker that missed the broadcast, still honours a revoke (Celery keeps
 * them in each worker's memory and optional state file only).
 */
export interface RevokedStore {
  /** Record `ids` as revoked until `ttlSeconds` from now. */
  add(ids: readonly string[], ttlSeconds: number): Promise<void>;
  /** Every id still revoked, with its expiry (ms since the epoch). */
  load(): Promise<Map<string, number>>;
}
