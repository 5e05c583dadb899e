-- store: write result records and notify waiters, never replacing a stored
-- SUCCESS (a redelivered duplicate must not rewrite a finished result).
--
-- KEYS[i]          celery-task-meta-<task id>, one per record
-- ARGV[1]          seconds until the records expire (0 = never)
-- ARGV[1 + i]      encoded record i (also published on the channel named like its key)
-- Returns          number of records written
local ttl = tonumber(ARGV[1])
local written = 0
for i, key in ipairs(KEYS) do
  local old = redis.call('GET', key)
  local done = false
  if old then
    -- JSON (Celery and Celeriac write status first) or msgpack ({"status": "SUCCESS", ...}).
    if string.find(old, '^%s*{%s*"status"%s*:%s*"SUCCESS"') or string.find(string.sub(old, 1, 24), '\166status\167SUCCESS', 1, true) then
      done = true
    end
  end
  if not done then
    local payload = ARGV[1 + i]
    if ttl > 0 then
      redis.call('SET', key, payload, 'EX', ttl)
    else
      redis.call('SET', key, payload)
    end
    redis.call('PUBLISH', key, payload)
    written = written + 1
  end
end
return written
