-- chord-part: Celery 5.2.6's native chord join (RedisBackend.on_chord_part_return,
-- with result_chord_ordered on, its default), done in one atomic step. Celery
-- runs the same commands in a MULTI (ZADD, ZCOUNT, GET .t, GET .s, EXPIRE x3)
-- and joins in a second round trip; here the part that completes the header
-- also reads the parts and deletes the keys, so exactly one caller fires the
-- body. A Python worker's parts go through Celery's pipeline on the same keys.
--
-- KEYS[1]   celery-taskset-meta-<group id>.j  sorted set of parts, scored by group_index
-- KEYS[2]   celery-taskset-meta-<group id>.t  extra parts added to the chord (Task.add_to_chord)
-- KEYS[3]   celery-taskset-meta-<group id>.s  header size, set by the client that sent the chord
-- ARGV[1]   encoded [1, task_id, state, result]
-- ARGV[2]   score: the part's group_index, or '+inf' when it has none
-- ARGV[3]   seconds until the keys expire (0 = never)
-- Returns   the parts in score order when this part completed the header, else nil
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
local ready = redis.call('ZCOUNT', KEYS[1], '-inf', '+inf')
local diff = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
local size = redis.call('GET', KEYS[3])
local ttl = tonumber(ARGV[3])
if ttl > 0 then
  redis.call('EXPIRE', KEYS[1], ttl)
  redis.call('EXPIRE', KEYS[2], ttl)
  redis.call('EXPIRE', KEYS[3], ttl)
end
if not size then return false end
if ready ~= (tonumber(size) or -1) + diff then return false end
local parts = redis.call('ZRANGE', KEYS[1], 0, -1)
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
return parts
