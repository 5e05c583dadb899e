-- ack: forget acknowledged deliveries (also used for reject without requeue).
--
-- KEYS[1]   unacked        hash
-- KEYS[2]   unacked_index  zset
-- ARGV      delivery tags
-- Returns   number of entries removed from the hash
local n = redis.call('HDEL', KEYS[1], unpack(ARGV))
redis.call('ZREM', KEYS[2], unpack(ARGV))
return n
