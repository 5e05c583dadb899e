-- store: write result records and notify waiters, never replacing a stored
-- SUCCESS (a redelivered duplicate must not rewrite a finished result).
--
-- The stored record's state is its `status` field, which every record keeps
-- in clear: Celery's JSON and msgpack records, and Celeriac's sealed ones
-- (the status is authenticated data beside the ciphertext, see
-- codec/encryption.ts). The record is decoded only when one is already
-- stored (a duplicate, a RETRY or STARTED record before the outcome), and
-- Celery's own layout (status first) is recognised without decoding.
-- Nothing is kept beside the record: a second key per result cost about a
-- sixth of the drain throughput (bench, 2026-12-05).
--
-- KEYS[i]          celery-task-meta-<task id> of record i
-- ARGV[1]          seconds until the records expire (0 = never)
-- ARGV[i + 1]      encoded record i (also published on the channel named like its record key)
-- Returns          number of records written

-- True when the stored record `old` says SUCCESS; anything unreadable is not.
local function is_success(old)
  local status = string.match(old, '^%s*{%s*"status"%s*:%s*"(%u+)"')
  if status then return status == 'SUCCESS' end
  local ok, rec
  if string.find(old, '^%s*{') then
    ok, rec = pcall(cjson.decode, old)
  else
    ok, rec = pcall(cmsgpack.unpack, old)
  end
  return ok and type(rec) == 'table' and rec['status'] == 'SUCCESS'
end

local ttl = tonumber(ARGV[1])
local written = 0
for i = 1, #KEYS do
  local key, payload = KEYS[i], ARGV[i + 1]
  local old = redis.call('GET', key)
  if not (old and is_success(old)) then
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
