-- beat-release: give up beat's leader lease if the caller still holds it
-- under its token (a lapsed and re-taken lease belongs to someone else).
--
-- KEYS[1]   the lease hash (celeriac:beat:{<ns>}:lock)
-- ARGV[1]   holder id
-- ARGV[2]   fencing token
-- Returns   1 when released, 0 otherwise
local cur = redis.call('HMGET', KEYS[1], 'holder', 'token')
if cur[1] == ARGV[1] and cur[2] == ARGV[2] then
  return redis.call('DEL', KEYS[1])
end
return 0
