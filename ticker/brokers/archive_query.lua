-- One page of the archive, newest first. The smallest term set drives (the whole archive
-- without terms); every other term is checked per key. At most `budget` keys are examined,
-- so a query whose terms rarely meet answers a short page and where to go on.
-- KEYS: archive items, archive all, term sets...
-- ARGV: below (exclusive key, or ''), at least (inclusive key, or ''), limit, budget
-- Returns: {next key or '', item JSON...}
local items, drive = KEYS[1], KEYS[2]
local below, at_least = ARGV[1], ARGV[2]
local limit, budget = tonumber(ARGV[3]), tonumber(ARGV[4])
local others = {}
if #KEYS > 2 then
  local best, smallest = 3, nil
  for i = 3, #KEYS do
    local size = redis.call('ZCARD', KEYS[i])
    if smallest == nil or size < smallest then
      best, smallest = i, size
    end
  end
  drive = KEYS[best]
  for i = 3, #KEYS do
    if i ~= best then
      others[#others + 1] = KEYS[i]
    end
  end
end

local max = below == '' and '+' or '(' .. below
local min = at_least == '' and '-' or '[' .. at_least
local found, scanned, last, more = {}, 0, nil, true
while #found <= limit and scanned < budget do
  local asked = math.min(256, budget - scanned)
  local batch = redis.call('ZREVRANGEBYLEX', drive, max, min, 'LIMIT', 0, asked)
  for _, key in ipairs(batch) do
    scanned = scanned + 1
    last = key
    local hit = true
    for _, other in ipairs(others) do
      if not redis.call('ZSCORE', other, key) then
        hit = false
        break
      end
    end
    if hit then
      found[#found + 1] = key
      if #found > limit then
        break
      end
    end
  end
  if #batch < asked then
    more = false
    break
  end
  max = '(' .. last
end

local nxt = ''
if #found > limit then
  found[#found] = nil
  nxt = found[limit]
elseif more and last then
  nxt = last
end
local reply = {nxt}
if #found > 0 then
  local ids = {}
  for i, key in ipairs(found) do
    ids[i] = string.sub(key, 15)
  end
  for _, item in ipairs(redis.call('HMGET', items, unpack(ids))) do
    if item then
      reply[#reply + 1] = item
    end
  end
end
return reply
