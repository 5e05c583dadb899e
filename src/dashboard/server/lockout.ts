/**
 * Brute-force protection of the login form, per account and per client
 * address: after `maxFailures` failures within `windowMs`, that account (or
 * address) is locked for `lockMs`. A locked account answers the same way
 * whether the password is right or not, so the lock cannot be used as an oracle.
 *
 * The counters live in a {@link ThrottleBackend} (memory, the SQLite state
 * file shared with the sessions, or Redis; see state.ts), so a restart does not hand an
 * attacker a fresh set of tries, and replicas sharing the store count together.
 */
import type { ThrottleBackend, ThrottleEntry } from '../../core/dashboard-state.ts';

export interface LoginThrottle {
  /** Milliseconds until `key` may try again, 0 when it may. */
  lockedFor(key: string): Promise<number>;
  /** Record a failure; returns true when this failure locked the key. */
  fail(key: string): Promise<boolean>;
  /** Forget the failures of `key` (after a successful login). */
  reset(key: string): Promise<void>;
}

export interface ThrottleOptions {
  maxFailures: number;
  windowMs: number;
  lockMs: number;
  now?: () => number;
}

export type { ThrottleBackend, ThrottleEntry } from '../../core/dashboard-state.ts';

/** The throttle rules over a backend (see the module comment). */
export function createLoginThrottle(options: ThrottleOptions & { backend?: ThrottleBackend }): LoginThrottle {
  const now = options.now ?? Date.now;
  const backend = options.backend ?? createMemoryThrottleBackend();
  let lastPurge = 0;
  return {
    async lockedFor(key) {
      const e = await backend.get(key);
      return e ? Math.max(0, e.lockedUntil - now()) : 0;
    },
    async fail(key) {
      const t = now();
      // Entries of keys that stopped failing would pile up under a spray of names or addresses.
      if (t - lastPurge > 60_000) {
        lastPurge = t;
        await backend.purge(t);
      }
      let locked = false;
      await backend.update(key, (current) => {
        locked = false; // the store may run this again after a concurrent change
        const failures = (current?.failures ?? []).filter((f) => t - f < options.windowMs);
        failures.push(t);
        let lockedUntil = current?.lockedUntil ?? 0;
        if (failures.length >= options.maxFailures) {
          lockedUntil = t + options.lockMs;
          failures.length = 0;
          locked = true;
        }
        return { failures, lockedUntil, expiresAt: Math.max(lockedUntil, t + options.windowMs) };
      });
      return locked;
    },
    reset: (key) => backend.delete(key),
  };
}

/** Throttle entries in this process only. */
export function createMemoryThrottleBackend(): ThrottleBackend {
  const entries = new Map<string, ThrottleEntry>();
  const copy = (e: ThrottleEntry | undefined): ThrottleEntry | undefined => (e ? { ...e, failures: [...e.failures] } : undefined);
  return {
    get: async (key) => copy(entries.get(key)),
    async update(key, fn) {
      const next = fn(copy(entries.get(key)));
      if (next) entries.set(key, copy(next)!);
      else entries.delete(key);
      return copy(next);
    },
    async delete(key) {
      entries.delete(key);
    },
    async purge(t) {
      let n = 0;
      for (const [k, e] of entries) if (e.expiresAt < t) (entries.delete(k), n++);
      return n;
    },
  };
}
