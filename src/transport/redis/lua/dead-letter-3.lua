-- dead-letter: move one delivery from the unacked bookkeeping to a
-- dead-letter list, keeping at most ARGV[3] records there.
--
-- KEYS[1]   unacked        hash
-- KEYS[2]   unacked_index  zset
-- KEYS[3]   dead-letter list
-- ARGV[1]   delivery tag
-- ARGV[2]   dead-letter record (JSON: reason, queue, time, original envelope)
-- ARGV[3]   most records the dead-letter list keeps (0 = no limit)
-- Returns   1 when moved, 0 when the delivery was no longer unacknowledged
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('LPUSH', KEYS[3], ARGV[2])
local max = tonumber(ARGV[3])
if max > 0 then redis.call('LTRIM', KEYS[3], 0, max - 1) end
return 1
