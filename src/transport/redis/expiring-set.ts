/**
 * The Redis backend's expiring id sets (core/backend.ts `ExpiringIdSet`):
 * one sorted set per name, `celeriac:revoked:<name>`, scored by expiry
 * (ms since the epoch). `add` is one Lua call (lua/expiring-set-add-1.lua),
 * so concurrent writers each keep their ids.
 */
import type { Redis } from 'ioredis';
import type { ExpiringIdSet } from '../../core/backend.ts';
import { expiringSetAdd } from './scripts.ts';

/** Key prefix of the sets (granted to the worker role only by `celeriac secrets redis-acl`). */
export const EXPIRING_SET_PREFIX = 'celeriac:revoked:';

export function redisExpiringIdSet(client: Redis, name: string, ready: () => Promise<void>): ExpiringIdSet {
  const key = EXPIRING_SET_PREFIX + name;
  return {
    async add(entries, maxSize) {
      if (entries.length === 0) return;
      await ready();
      await expiringSetAdd(client, { set: key }, { now: Date.now(), max: maxSize, entries });
    },
    async load() {
      await ready();
      const flat = await client.zrangebyscore(key, `(${Date.now()}`, '+inf', 'WITHSCORES');
      const out = new Map<string, number>();
      for (let i = 0; i + 1 < flat.length; i += 2) out.set(flat[i]!, Number(flat[i + 1]));
      return out;
    },
  };
}
