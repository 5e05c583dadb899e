-- restore: move one unacknowledged delivery whose lease ran out back to its
-- queue(s), unless it was acked or its lease was renewed since it was read.
--
-- KEYS[1]      unacked        hash
-- KEYS[2]      unacked_index  zset
-- KEYS[3..]    destination lists (one per bound queue)
-- ARGV[1]      delivery tag
-- ARGV[2]      cutoff: restore only if the index score is <= this (UNIX seconds)
-- ARGV[3]      envelope to push (with its redelivered flags set)
-- Returns      1 when restored, 0 otherwise
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[2]) then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
for i = 3, #KEYS do
  redis.call('RPUSH', KEYS[i], ARGV[3])
end
return 1
