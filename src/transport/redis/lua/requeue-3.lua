-- requeue: give one delivery back to its queue, but only if it is still
-- unacknowledged (a restore by another consumer may have moved it already).
--
-- KEYS[1]   unacked        hash
-- KEYS[2]   unacked_index  zset
-- KEYS[3]   destination list
-- ARGV[1]   delivery tag
-- ARGV[2]   envelope to push (with its redelivered flags set)
-- ARGV[3]   'head' (RPUSH: served next) or 'tail' (LPUSH: served last)
-- Returns   1 when requeued, 0 when the entry was gone
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
if ARGV[3] == 'head' then
  redis.call('RPUSH', KEYS[3], ARGV[2])
else
  redis.call('LPUSH', KEYS[3], ARGV[2])
end
return 1
