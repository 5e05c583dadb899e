-- replay-refresh: extend the leases of claimed nonces a holder still has.
--
-- KEYS[i]   claimed nonce i (celeriac:replay:<nonce>)
-- ARGV[1]   'H' .. the holder's id
-- ARGV[2]   new lease, ms
-- Returns   how many leases were extended (the others were settled or taken over)
local n = 0
for i, k in ipairs(KEYS) do
  if redis.call('GET', k) == ARGV[1] then
    redis.call('PEXPIRE', k, ARGV[2])
    n = n + 1
  end
end
return n
