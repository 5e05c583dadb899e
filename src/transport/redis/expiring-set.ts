/**
 * The Redis backend's expiring id sets (core/backend.ts `ExpiringIdSet`):
 * one sorted set per name, `celeriac:revoked:<name>`, scored by expiry
 * (ms since the epoch). `add` is one Lua call, so concurrent writers each
 * keep their ids; it uses only commands the generated worker ACL grants
 * (ZSCORE, ZADD, ZRANGEBYSCORE, ZRANGE, ZREM, ZCARD, PEXPIRE).
 */
import type { Redis } from 'ioredis';
import type { ExpiringIdSet } from '../../core/backend.ts';

/** Key prefix of the sets (granted to the worker role only by `celeriac secrets redis-acl`). */
export const EXPIRING_SET_PREFIX = 'celeriac:revoked:';

// KEYS[1] the set; ARGV[1] now (ms); ARGV[2] the most ids kept; then id, expiry pairs.
const ADD = `
local key, now, max = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])
for i = 3, #ARGV, 2 do
  local cur = redis.call('ZSCORE', key, ARGV[i])
  if (not cur) or tonumber(cur) < tonumber(ARGV[i + 1]) then redis.call('ZADD', key, ARGV[i + 1], ARGV[i]) end
end
local function drop(list)
  for i = 1, #list, 1000 do redis.call('ZREM', key, unpack(list, i, math.min(i + 999, #list))) end
end
drop(redis.call('ZRANGEBYSCORE', key, '-inf', now))
local over = redis.call('ZCARD', key) - max
if over > 0 then drop(redis.call('ZRANGE', key, 0, over - 1)) end
local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
if last[2] then redis.call('PEXPIRE', key, math.max(1, math.ceil(tonumber(last[2]) - now))) end
return 0`;

export function redisExpiringIdSet(client: Redis, name: string, ready: () => Promise<void>): ExpiringIdSet {
  const key = EXPIRING_SET_PREFIX + name;
  return {
    async add(entries, maxSize) {
      if (entries.length === 0) return;
      await ready();
      await client.eval(ADD, 1, key, Date.now(), maxSize, ...entries.flatMap(([id, until]) => [id, Math.round(until)]));
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
