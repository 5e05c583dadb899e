-- replay-sync: the settles and claims of one event-loop turn of a replay
-- store (the nonces of signed messages already run) in one call: a worker
-- acks one batch while it admits the next. A nonce key holds 'S' (settled:
-- the message ran) or 'H<holder>' (claimed: a worker is running it, under a
-- lease).
--
-- KEYS[1..s]       settled nonces (celeriac:replay:<nonce>), s = ARGV[1]
-- KEYS[s+1..]      claimed nonces
-- ARGV[1]          s, how many of KEYS are settled nonces
-- ARGV[2]          settle TTL, ms
-- ARGV[3]          'H' .. the claiming holder's id
-- ARGV[4]          lease, ms
-- ARGV[5..]        pairs (claim index c, 1-based among the claims; 'H' .. a stale holder):
--                  claim c may replace that holder, which is known to be dead
-- Returns          per claim, in order: 0 claimed, 1 already settled, or the
--                  value of the live holder that has it
local n = tonumber(ARGV[1])
for i = 1, n do redis.call('SET', KEYS[i], 'S', 'PX', ARGV[2]) end
local stale = {}
for j = 5, #ARGV, 2 do stale[tonumber(ARGV[j])] = ARGV[j + 1] end
local out = {}
for i = n + 1, #KEYS do
  local k = KEYS[i]
  local c = i - n
  local v = redis.call('GET', k)
  if (not v) or (stale[c] ~= nil and v == stale[c]) then
    redis.call('SET', k, ARGV[3], 'PX', ARGV[4])
    out[c] = 0
  elseif v == 'S' then
    out[c] = 1
  else
    out[c] = v
  end
end
return out
