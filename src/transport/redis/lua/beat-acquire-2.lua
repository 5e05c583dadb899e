-- beat-acquire: take or extend celeriac beat's leader lease. A new holder
-- gets a new fencing token from a counter that only grows (it outlives the
-- lease), so every later claim can tell an old leader from the current one.
-- The lease lapses on the server's clock (PEXPIRE), whatever the clients' clocks say.
--
-- KEYS[1]   the lease, a hash {holder, token} (celeriac:beat:{<ns>}:lock)
-- KEYS[2]   the fencing counter (celeriac:beat:{<ns>}:fence)
-- ARGV[1]   holder id of the caller
-- ARGV[2]   lease length, ms
-- Returns   {1, token, expires_at_ms} when the caller holds the lease,
--           {0, holder, expires_at_ms} when another instance does
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[2])
local cur = redis.call('HMGET', KEYS[1], 'holder', 'token')
if cur[1] and cur[1] ~= ARGV[1] then
  local ttl = redis.call('PTTL', KEYS[1])
  return {0, cur[1], tostring(now + math.max(ttl, 0))}
end
local token = cur[2]
if not cur[1] then
  token = tostring(redis.call('INCR', KEYS[2]))
  redis.call('HSET', KEYS[1], 'holder', ARGV[1], 'token', token)
end
redis.call('PEXPIRE', KEYS[1], lease)
return {1, token, tostring(now + lease)}
