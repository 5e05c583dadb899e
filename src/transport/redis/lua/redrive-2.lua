-- redrive: move one dead-letter record back onto a queue, once. The record
-- is removed from the dead-letter list and its message pushed in one step,
-- so a redrive that runs twice (or concurrently) cannot duplicate it.
--
-- KEYS[1]   dead-letter list (<queue>.dlq)
-- KEYS[2]   target queue list (the priority bucket the message belongs in)
-- ARGV[1]   the dead-letter record exactly as stored
-- ARGV[2]   the message envelope to push (the record's payload)
-- Returns   1 when moved, 0 when the record was no longer there
if redis.call('LREM', KEYS[1], -1, ARGV[1]) == 0 then return 0 end
redis.call('LPUSH', KEYS[2], ARGV[2])
return 1
