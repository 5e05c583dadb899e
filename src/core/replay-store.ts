/**
 * The replay store interface: shared nonce state of signed messages (the
 * state machine is described in src/security/replay-guard.ts). Here, not
 * beside the implementations, so that settings (`securityReplayStore`) can
 * name the type without importing any storage code.
 */

/** What a claim found: the nonce was free (now held by the caller), already settled, or held by another consumer (named). */
export type ClaimResult = { state: 'claimed' } | { state: 'settled' } | { state: 'held'; holder: string };

/**
 * Shared nonce state. Implementations must make `claim` atomic: of two
 * concurrent claims of one nonce, at most one returns `claimed`.
 */
export interface ReplayStore {
  /** `redis`, `sqlite`, `memory`, … */
  readonly kind: string;
  /** True when every worker sharing the broker sees the same state. */
  readonly shared: boolean;
  /**
   * ABSENT → HELD(holder) for `leaseMs`; also HELD(`staleHolder`) →
   * HELD(holder) when `staleHolder` is given (a holder known to be dead).
   * Otherwise report the state.
   */
  claim(nonce: string, holder: string, leaseMs: number, staleHolder?: string): Promise<ClaimResult>;
  /** → SETTLED for `ttlMs` (whatever the state was). */
  settle(nonce: string, ttlMs: number): Promise<void>;
  /** HELD(holder) → ABSENT; no effect when someone else holds it or it is settled. */
  release(nonce: string, holder: string): Promise<void>;
  /** Extend the lease of every nonce still HELD by `holder`. */
  refresh(nonces: readonly string[], holder: string, leaseMs: number): Promise<void>;
  close(): Promise<void>;
}
