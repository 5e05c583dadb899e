-- expiring-set-add: add ids to an expiring id set (the revoked task ids),
-- atomically: concurrent writers each keep their ids. A later expiry wins;
-- expired ids are dropped; past `max` the soonest to expire go first; the
-- key lives as long as its longest entry. Uses only commands the generated
-- worker ACL grants (ZSCORE, ZADD, ZRANGEBYSCORE, ZRANGE, ZREM, ZCARD, PEXPIRE).
--
-- KEYS[1]   the sorted set (celeriac:revoked:<name>), scored by expiry (ms since the epoch)
-- ARGV[1]   now, ms since the epoch
-- ARGV[2]   the most ids kept
-- ARGV[3..] id, expiry pairs
-- Returns   0
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
return 0
