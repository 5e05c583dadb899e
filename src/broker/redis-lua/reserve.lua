-- reserve: take up to ARGV[2] messages and record them as unacknowledged in
-- the same atomic step, so a consumer that dies after this script can never
-- lose a message (kombu's BRPOP-then-HSET has that window). The entries use
-- kombu's exact layout, so Python workers can restore them and vice versa.
--
-- KEYS[1]        unacked         hash  delivery_tag -> [envelope, exchange, routing_key]
-- KEYS[2]        unacked_index   zset  delivery_tag scored by delivery time
-- KEYS[3..2+n]   queue lists, in consumption order (priority outer, queue inner)
-- ARGV[1]        now, UNIX seconds (float text)
-- ARGV[2]        most messages to take
-- ARGV[3]        exchange, JSON-encoded (normally "")
-- ARGV[4..3+n]   routing key (queue name) of each list, JSON-encoded
-- ARGV[4+n]      delivery tag prefix, unique to the consumer
-- ARGV[5+n]      sequence number of the first tag (tags are prefix .. number)
-- Returns        flat list: list index (1-based), envelope, delivery tag, ...
local nq = #KEYS - 2
local max = tonumber(ARGV[2])
local prefix = ARGV[4 + nq]
local seq = tonumber(ARGV[5 + nq])
local taken = 0
local out, hset, zadd = {}, {}, {}
for i = 1, nq do
  if taken >= max then break end
  local items = redis.call('RPOP', KEYS[i + 2], max - taken)
  if items then
    for _, payload in ipairs(items) do
      taken = taken + 1
      local tag = prefix .. (seq + taken - 1)
      hset[#hset + 1] = tag
      hset[#hset + 1] = '[' .. payload .. ', ' .. ARGV[3] .. ', ' .. ARGV[3 + i] .. ']'
      zadd[#zadd + 1] = ARGV[1]
      zadd[#zadd + 1] = tag
      out[#out + 1] = i
      out[#out + 1] = payload
      out[#out + 1] = tag
    end
  end
end
if taken > 0 then
  redis.call('HSET', KEYS[1], unpack(hset))
  redis.call('ZADD', KEYS[2], unpack(zadd))
end
return out
