-- take-tokens: take n tokens from every shared send-rate bucket in KEYS, or
-- from none, on the server's clock (so clients with skewed clocks agree).
-- A bucket is a hash {t = tokens left, ts = last refill, ms}; it expires
-- once it would be full again anyway.
--
-- KEYS[i]        bucket i (celeriac:ratelimit:<name>), one per shared limit
-- ARGV[1]        n, tokens to take from each bucket
-- ARGV[2i]       rate of bucket i, tokens per second
-- ARGV[2i + 1]   capacity of bucket i, tokens
-- Returns        0 when taken, else the ms until all could be taken (nothing taken then)
if redis.replicate_commands then redis.replicate_commands() end
local n = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local tokens = {}
local wait = 0
for i, key in ipairs(KEYS) do
  local rate = tonumber(ARGV[2 * i])
  local cap = tonumber(ARGV[2 * i + 1])
  local b = redis.call('HMGET', key, 't', 'ts')
  local tk = tonumber(b[1])
  local ts = tonumber(b[2])
  if tk == nil or ts == nil then tk = cap ts = now end
  if now > ts then tk = math.min(cap, tk + (now - ts) * rate / 1000) end
  tokens[i] = tk
  if tk < n then
    local w = math.ceil((n - tk) * 1000 / rate)
    if w > wait then wait = w end
  end
end
for i, key in ipairs(KEYS) do
  local rate = tonumber(ARGV[2 * i])
  local cap = tonumber(ARGV[2 * i + 1])
  local tk = tokens[i]
  if wait == 0 then tk = tk - n end
  redis.call('HSET', key, 't', tostring(tk), 'ts', tostring(now))
  redis.call('PEXPIRE', key, math.ceil(cap * 1000 / rate) + 1000)
end
return wait
