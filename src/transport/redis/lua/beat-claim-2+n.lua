-- beat-claim: the fencing check and the record of a tick in one atomic
-- step, and (the outbox) the tick's task message pushed in the same step
-- when beat's broker is this server. The claim succeeds only when the
-- caller's token still holds a live lease and the tick is later than the
-- last one recorded for the entry, so each tick is claimed (and sent) at
-- most once across every beat instance, and a paused old leader cannot
-- claim after its lease lapsed. With the message pushed here, a leader
-- that dies right after the claim cannot lose the tick either.
--
-- KEYS[1]   the lease hash (celeriac:beat:{<ns>}:lock)
-- KEYS[2]   the entries hash, entry name -> JSON state (celeriac:beat:{<ns>}:entries)
-- KEYS[3]   optional: the queue's list (kombu layout, with its priority
--           suffix) to LPUSH the task message onto
-- ARGV[1]   fencing token of the caller
-- ARGV[2]   entry name
-- ARGV[3]   the tick's scheduled time, ms since the epoch
-- ARGV[4]   id of the task that will be sent for it
-- ARGV[5]   earlier ticks the catch-up policy passed over with this one
-- ARGV[6]   without KEYS[3]: the serialized message kept until the publish
--           is confirmed (a new leader sends it again), or ''
-- ARGV[7]   with KEYS[3]: the message's kombu envelope
-- Returns   {'claimed', '1' when pushed else '0'}, {'fenced'}, or {'done', last_tick}
if redis.replicate_commands then redis.replicate_commands() end
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then
  return {'fenced'}
end
local tick = tonumber(ARGV[3])
local prev = redis.call('HGET', KEYS[2], ARGV[2])
local total, skipped = 0, 0
if prev then
  local p = cjson.decode(prev)
  if tonumber(p.lastTick) >= tick then return {'done', tostring(p.lastTick)} end
  total = tonumber(p.total) or 0
  skipped = tonumber(p.skipped) or 0
end
local pushed = '0'
if KEYS[3] then
  redis.call('LPUSH', KEYS[3], ARGV[7])
  pushed = '1'
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = {
  lastTick = ARGV[3], taskId = ARGV[4], sentAt = tostring(now), token = ARGV[1],
  total = tostring(total + 1), skipped = tostring(skipped + tonumber(ARGV[5])), confirmed = pushed,
}
if pushed == '0' and ARGV[6] ~= '' then state.pending = ARGV[6] end
redis.call('HSET', KEYS[2], ARGV[2], cjson.encode(state))
return {'claimed', pushed}
