-- reserve: take up to ARGV[2] messages and record them as unacknowledged in
-- the same atomic step, so a consumer that dies after this script can never
-- lose a message (kombu's BRPOP-then-HSET has that window). The entries use
-- kombu's exact layout, so Python workers can restore them and vice versa.
--
-- KEYS[1]        unacked         hash  delivery_tag -> [envelope, exchange, routing_key]
-- KEYS[2]        unacked_index   zset  delivery_tag scored by delivery time
-- KEYS[3..2+n]   queue lists, in consumption order (priority outer, queue inner)
-- KEYS[3+n..2+2n] the dead-letter list of each queue list's queue
-- ARGV[1]        now, UNIX seconds (float text)
-- ARGV[2]        most messages to take
-- ARGV[3]        exchange, JSON-encoded (normally "")
-- ARGV[4..3+n]   routing key (queue name) of each list, JSON-encoded
-- ARGV[4+n]      delivery tag prefix, unique to the consumer
-- ARGV[5+n]      sequence number of the first tag (tags are prefix .. number)
-- ARGV[6+n]      largest envelope accepted, bytes (0 = no limit): a larger one is
--                never handed out; a truncated record of it (its id, size and the
--                reason) goes to the dead-letter list instead, so no consumer ever
--                reads it whole
-- ARGV[7+n]      most records a dead-letter list keeps (0 = no limit)
-- Returns        the number taken from each list (n entries, in KEYS order), then
--                every envelope taken, in that order; the k-th envelope (from 0)
--                has the delivery tag prefix .. (seq + k); then, for each oversized
--                envelope dead-lettered instead: its list's index (1-based), its size
--                and its task id ('' when not found).
--                {-1} when the first tag is already in unacked: this call is a
--                replay (the client resent it after a reconnect, the first run's
--                reply was lost); nothing is taken, so the first run's entries are
--                not overwritten, and the client recovers them by their tags.
local nq = (#KEYS - 2) / 2
local max = tonumber(ARGV[2])
local prefix = ARGV[4 + nq]
local seq = tonumber(ARGV[5 + nq])
local maxBytes = tonumber(ARGV[6 + nq])
local dlqMax = tonumber(ARGV[7 + nq])
if redis.call('HEXISTS', KEYS[1], prefix .. seq) == 1 then return { -1 } end
local taken = 0
local out, hset, zadd, over = {}, {}, {}, {}
for i = 1, nq do out[i] = 0 end
for i = 1, nq do
  if taken >= max then break end
  local items = redis.call('RPOP', KEYS[i + 2], max - taken)
  if items then
    out[i] = #items
    local suffix = ', ' .. ARGV[3] .. ', ' .. ARGV[3 + i] .. ']'
    for _, payload in ipairs(items) do
      if maxBytes > 0 and #payload > maxBytes then
        -- kombu writes the body first and the headers last: the id is near the end.
        local id = string.match(string.sub(payload, -8192), '"id": *"([^"]+)"')
        local queue = cjson.decode(ARGV[3 + i])
        local record = cjson.encode({
          reason = 'message of ' .. #payload .. ' bytes exceeds the ' .. maxBytes .. '-byte limit (truncated here)',
          queue = queue, at = tonumber(ARGV[1]), id = id, size = #payload, truncated = true,
          payload = string.sub(payload, 1, 1024) })
        local dlq = KEYS[2 + nq + i]
        redis.call('LPUSH', dlq, record)
        if dlqMax > 0 then redis.call('LTRIM', dlq, 0, dlqMax - 1) end
        out[i] = out[i] - 1
        over[#over + 1] = i
        over[#over + 1] = #payload
        over[#over + 1] = id or ''
      else
        local tag = prefix .. (seq + taken)
        taken = taken + 1
        hset[#hset + 1] = tag
        hset[#hset + 1] = '[' .. payload .. suffix
        zadd[#zadd + 1] = ARGV[1]
        zadd[#zadd + 1] = tag
        out[#out + 1] = payload
      end
    end
  end
end
if taken > 0 then
  redis.call('HSET', KEYS[1], unpack(hset))
  redis.call('ZADD', KEYS[2], unpack(zadd))
end
for _, v in ipairs(over) do out[#out + 1] = v end
return out
