/**
 * The Redis engine's beat store (`core/beat-store.ts`): the lease, the
 * fencing counter and the per-entry state under
 * `<prefix>celeriac:beat:{<namespace>}:…` (one hash slot), changed only by
 * the `beat-*.lua` scripts so every check-and-write is atomic on the server.
 */
import type { Redis } from 'ioredis';
import type { BeatEntryState, BeatStore } from '../../core/beat-store.ts';
import { beatAcquire, beatClaim, beatConfirm, beatRelease, type BeatKeys } from './scripts.ts';

/** The keys of `namespace` under `keyPrefix`. */
export function beatKeys(keyPrefix: string, namespace: string): BeatKeys {
  const base = `${keyPrefix}celeriac:beat:{${namespace}}`;
  return { lock: `${base}:lock`, fence: `${base}:fence`, entries: `${base}:entries` };
}

/** A store on `client` (which it owns: `close()` quits it). */
export function createRedisBeatStore(client: Redis, keyPrefix: string, namespace: string): BeatStore {
  const keys = beatKeys(keyPrefix, namespace);
  return {
    kind: 'redis',
    async acquire(holder, leaseMs) {
      const [ok, who, expires] = await beatAcquire(client, keys, { holder, leaseMs: Math.ceil(leaseMs) });
      return Number(ok) === 1
        ? { leader: true, token: Number(who), expiresAt: Number(expires) }
        : { leader: false, holder: String(who), expiresAt: Number(expires) };
    },
    async release(holder, token) {
      await beatRelease(client, keys, { holder, token });
    },
    async claim(input) {
      const [state, last] = await beatClaim(client, keys, input);
      if (state === 'claimed') return { state: 'claimed' };
      if (state === 'done') return { state: 'done', lastTick: Number(last) };
      return { state: 'fenced' };
    },
    async confirm(entry, tick) {
      await beatConfirm(client, keys, { entry, tick });
    },
    async read() {
      const [[, lock], [, ttl], [, raw]] = (await client.multi().hgetall(keys.lock).pttl(keys.lock).hgetall(keys.entries).exec()) as [
        [unknown, Record<string, string>],
        [unknown, number],
        [unknown, Record<string, string>],
      ];
      const lease = lock.holder && ttl > 0 ? { holder: lock.holder, token: Number(lock.token), expiresAt: Date.now() + ttl } : undefined;
      const entries: BeatEntryState[] = Object.entries(raw).map(([name, json]) => {
        const p = JSON.parse(json) as Record<string, string>;
        return { name, lastTick: Number(p.lastTick), taskId: String(p.taskId), sentAt: Number(p.sentAt), token: Number(p.token), total: Number(p.total), skipped: Number(p.skipped), confirmed: p.confirmed === '1' };
      });
      return { lease, entries };
    },
    async close() {
      await client.quit().catch(() => undefined);
    },
  };
}
