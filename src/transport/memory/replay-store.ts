/**
 * The memory engine's replay store (the `ReplayStore` of
 * `core/replay-store.ts`; the state machine is in `security/replay-guard.ts`).
 */
import type { ClaimResult, ReplayStore } from '../../core/replay-store.ts';

/**
 * Process-local store: correct for one worker process (the memory broker,
 * tests), blind to replays delivered to another process.
 */
export class MemoryReplayStore implements ReplayStore {
  readonly kind = 'memory';
  readonly shared = false;
  private readonly entries = new Map<string, { state: string; until: number }>();
  private ops = 0;

  private live(nonce: string, now: number): string | undefined {
    const e = this.entries.get(nonce);
    if (!e) return undefined;
    if (e.until <= now) {
      this.entries.delete(nonce);
      return undefined;
    }
    return e.state;
  }

  private sweep(now: number): void {
    // Amortised: a pass over the map every 4096 operations keeps it bounded by the live nonces.
    if (++this.ops % 4096 !== 0) return;
    for (const [k, e] of this.entries) if (e.until <= now) this.entries.delete(k);
  }

  async claim(nonce: string, holder: string, leaseMs: number, staleHolder?: string): Promise<ClaimResult> {
    const now = Date.now();
    this.sweep(now);
    const state = this.live(nonce, now);
    if (state === undefined || (staleHolder !== undefined && state === `H${staleHolder}`)) {
      this.entries.set(nonce, { state: `H${holder}`, until: now + leaseMs });
      return { state: 'claimed' };
    }
    return state === 'S' ? { state: 'settled' } : { state: 'held', holder: state.slice(1) };
  }

  async settle(nonce: string, ttlMs: number): Promise<void> {
    this.entries.set(nonce, { state: 'S', until: Date.now() + ttlMs });
  }

  async release(nonce: string, holder: string): Promise<void> {
    if (this.live(nonce, Date.now()) === `H${holder}`) this.entries.delete(nonce);
  }

  async refresh(nonces: readonly string[], holder: string, leaseMs: number): Promise<void> {
    const now = Date.now();
    for (const n of nonces) {
      const e = this.entries.get(n);
      if (e && e.state === `H${holder}` && e.until > now) e.until = now + leaseMs;
    }
  }

  async close(): Promise<void> {
    this.entries.clear();
  }
}
