/**
 * The memory engine's beat store (`core/beat-store.ts`): one state per
 * namespace shared by every beat of this process (tests, demos). The same
 * rules as the Redis and SQLite stores, checked in one synchronous step.
 */
import type { BeatAcquire, BeatClaim, BeatClaimInput, BeatEntryState, BeatLease, BeatStore } from '../../core/beat-store.ts';

interface Space {
  lease: BeatLease | undefined;
  /** The fencing counter: survives releases, only grows. */
  fence: number;
  entries: Map<string, BeatEntryState>;
}

const SPACES = new Map<string, Space>();

/** A store on this process's state for `namespace`. */
export function createMemoryBeatStore(namespace: string): BeatStore {
  let space = SPACES.get(namespace);
  if (!space) SPACES.set(namespace, (space = { lease: undefined, fence: 0, entries: new Map() }));
  const s = space;
  const live = (now: number): BeatLease | undefined => (s.lease && s.lease.expiresAt > now ? s.lease : undefined);
  return {
    kind: 'memory',
    async acquire(holder, leaseMs): Promise<BeatAcquire> {
      const now = Date.now();
      const lease = live(now);
      if (lease && lease.holder !== holder) return { leader: false, holder: lease.holder, expiresAt: lease.expiresAt };
      const token = lease ? lease.token : ++s.fence;
      s.lease = { holder, token, expiresAt: now + leaseMs };
      return { leader: true, token, expiresAt: s.lease.expiresAt };
    },
    async release(holder, token) {
      if (s.lease && s.lease.holder === holder && s.lease.token === token) s.lease = undefined;
    },
    async claim(input: BeatClaimInput): Promise<BeatClaim> {
      const lease = live(Date.now());
      if (!lease || lease.token !== input.token) return { state: 'fenced' };
      const prev = s.entries.get(input.entry);
      if (prev && prev.lastTick >= input.tick) return { state: 'done', lastTick: prev.lastTick };
      s.entries.set(input.entry, {
        name: input.entry,
        lastTick: input.tick,
        taskId: input.taskId,
        sentAt: Date.now(),
        token: input.token,
        total: (prev?.total ?? 0) + 1,
        skipped: (prev?.skipped ?? 0) + input.skipped,
        confirmed: false,
        ...(input.pending !== undefined ? { pending: input.pending } : {}),
      });
      return { state: 'claimed', published: false };
    },
    async confirm(entry, tick) {
      const e = s.entries.get(entry);
      if (e && e.lastTick === tick) {
        e.confirmed = true;
        delete e.pending;
      }
    },
    async read() {
      return { lease: live(Date.now()), entries: [...s.entries.values()].map((e) => ({ ...e })) };
    },
    async close() {},
  };
}
