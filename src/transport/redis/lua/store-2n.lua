-- store: write result records and notify waiters, never replacing a stored
-- SUCCESS (a redelivered duplicate must not rewrite a finished result).
--
-- The state of each record is passed in and kept beside it, in a companion
-- key with the same expiry, so the rule holds whatever the record's bytes
-- are (an encrypted record's state cannot be read from them). The record
-- key itself holds exactly Celery's record, which Python clients read.
-- Records written by others (Python Celery workers, Celeriac before the
-- companion key) have none: for those the record's start is read, as Celery
-- and Celeriac write plain records with the status first.
--
-- KEYS[2i - 1]     celery-task-meta-<task id> of record i: the record
-- KEYS[2i]         celeriac:task-state:<task id> of record i: its state
-- ARGV[1]          seconds until the records expire (0 = never)
-- ARGV[2i]         state of record i (SUCCESS, FAILURE, STARTED, ...)
-- ARGV[2i + 1]     encoded record i (also published on the channel named like its record key)
-- Returns          number of records written
local ttl = tonumber(ARGV[1])
local written = 0
for i = 1, #KEYS / 2 do
  local key, stateKey = KEYS[2 * i - 1], KEYS[2 * i]
  local state, payload = ARGV[2 * i], ARGV[2 * i + 1]
  local done = false
  local stored = redis.call('GET', stateKey)
  if stored == 'SUCCESS' then
    -- Unless the record was deleted without its companion (a Python client's forget).
    done = redis.call('EXISTS', key) == 1
  end
  if not done then
    local old = redis.call('GET', key)
    if old then
      -- JSON (Celery and Celeriac write status first) or msgpack ({"status": "SUCCESS", ...}).
      if string.find(old, '^%s*{%s*"status"%s*:%s*"SUCCESS"') or string.find(string.sub(old, 1, 24), '\166status\167SUCCESS', 1, true) then
        done = true
      end
    end
  end
  if not done then
    if ttl > 0 then
      redis.call('SET', key, payload, 'EX', ttl)
      redis.call('SET', stateKey, state, 'EX', ttl)
    else
      redis.call('SET', key, payload)
      redis.call('SET', stateKey, state)
    end
    redis.call('PUBLISH', key, payload)
    written = written + 1
  end
end
return written
