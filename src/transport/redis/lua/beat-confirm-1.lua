-- beat-confirm: mark the publish of an entry's last tick as done, if that
-- tick is still the entry's last (a later claim starts unconfirmed), and drop
-- the copy of its message kept for a new leader to send again.
--
-- KEYS[1]   the entries hash (celeriac:beat:{<ns>}:entries)
-- ARGV[1]   entry name
-- ARGV[2]   the tick, ms since the epoch
-- Returns   1 when marked, 0 otherwise
local prev = redis.call('HGET', KEYS[1], ARGV[1])
if not prev then return 0 end
local p = cjson.decode(prev)
if tonumber(p.lastTick) ~= tonumber(ARGV[2]) then return 0 end
p.confirmed = '1'
p.pending = nil
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(p))
return 1
