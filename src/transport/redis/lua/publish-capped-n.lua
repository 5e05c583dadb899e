-- publish-capped: push messages onto a queue only if the queue (all its
-- priority buckets) stays within its maximum length, atomically, so that
-- concurrent producers cannot overshoot the cap.
--
-- KEYS[1..n]   the queue's priority bucket lists (all of them, for the count)
-- ARGV[1]      maximum number of messages the queue may hold
-- ARGV[2]      index (1-based) into KEYS of the bucket to push onto
-- ARGV[3..]    envelopes to LPUSH
-- Returns      the new length, or -(current length) - 1 when full (nothing pushed)
local n = 0
for i = 1, #KEYS do n = n + redis.call('LLEN', KEYS[i]) end
local count = #ARGV - 2
if n + count > tonumber(ARGV[1]) then return -n - 1 end
redis.call('LPUSH', KEYS[tonumber(ARGV[2])], unpack(ARGV, 3))
return n + count
