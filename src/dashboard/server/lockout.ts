/**
 * Brute-force protection of the login form, per account and per client
 * address: after `maxFailures` failures within `windowMs`, that account (or
 * address) is locked for `lockMs`. A locked account answers the same way
 * whether the password is right or not, so the lock cannot be used as an oracle.
 */

export interface LoginThrottle {
  /** Milliseconds until `key` may try again, 0 when it may. */
  lockedFor(key: string): number;
  /** Record a failure; returns true when this failure locked the key. */
  fail(key: string): boolean;
  /** Forget the failures of `key` (after a successful login). */
  reset(key: string): void;
}

export interface ThrottleOptions {
  maxFailures: number;
  windowMs: number;
  lockMs: number;
  now?: () => number;
}

export function createLoginThrottle(options: ThrottleOptions): LoginThrottle {
  const now = options.now ?? Date.now;
  const entries = new Map<string, { failures: number[]; lockedUntil: number }>();
  return {
    lockedFor(key) {
      const e = entries.get(key);
      if (!e) return 0;
      return Math.max(0, e.lockedUntil - now());
    },
    fail(key) {
      const t = now();
      if (entries.size > 100_000) {
        for (const [k, e] of entries) if (e.lockedUntil < t && (e.failures.at(-1) ?? 0) < t - options.windowMs) entries.delete(k);
      }
      const e = entries.get(key) ?? { failures: [], lockedUntil: 0 };
      e.failures = e.failures.filter((f) => t - f < options.windowMs);
      e.failures.push(t);
      entries.set(key, e);
      if (e.failures.length >= options.maxFailures) {
        e.lockedUntil = t + options.lockMs;
        e.failures = [];
        return true;
      }
      return false;
    },
    reset(key) {
      entries.delete(key);
    },
  };
}
