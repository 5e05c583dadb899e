-- push-verified: send again values whose first LPUSH got no answer (the
-- connection dropped after writing it), pushing only those the list does
-- not already hold, so a send that had landed is not stored twice. Values
-- are unique (each envelope carries its own delivery tag) and a recent push
-- sits near the head, so the search is bounded.
--
-- KEYS[1..n]   the queue's priority bucket lists (all of them, to count for a cap)
-- ARGV[1]      maximum number of messages the queue may hold (0 = no cap)
-- ARGV[2]      index (1-based) into KEYS of the bucket to push onto
-- ARGV[3]      how far from the head to look (LPOS MAXLEN)
-- ARGV[4..]    values, in send order
-- Returns      how many were pushed, or -(current length) - 1 when a cap refuses them
local key = KEYS[tonumber(ARGV[2])]
local maxlen = tonumber(ARGV[3])
local missing = {}
for i = 4, #ARGV do
  if not redis.call('LPOS', key, ARGV[i], 'MAXLEN', maxlen) then missing[#missing + 1] = ARGV[i] end
end
if #missing == 0 then return 0 end
local cap = tonumber(ARGV[1])
if cap > 0 then
  local n = 0
  for i = 1, #KEYS do n = n + redis.call('LLEN', KEYS[i]) end
  if n + #missing > cap then return -n - 1 end
end
redis.call('LPUSH', key, unpack(missing))
return #missing
