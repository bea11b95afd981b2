-- Keep, change or drop a scheduled item, apart from the live ones: nothing is logged or
-- announced, so no reader sees it before it is released (by publish.lua, which claims it).
-- KEYS: scheduled (due times), scheduled items, live items[, idempotency record]
-- ARGV: 'put' or 'cancel', item id, expected version (or '' for a new item),
--       item JSON, due ms, fingerprint, idempotency ttl, item version
local due, waiting, items, idem = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local action, id, expected, item_json, due_ms, fingerprint, ttl, version = unpack(ARGV)

if idem then
  local seen = redis.call('HMGET', idem, 'fingerprint', 'id', 'version')
  if seen[1] then
    if seen[1] ~= fingerprint then
      return {'mismatch'}
    end
    return {'replayed-id', seen[2], seen[3],
      redis.call('HGET', items, seen[2]) or redis.call('HGET', waiting, seen[2]) or ''}
  end
end

local held = redis.call('HGET', waiting, id)
local current = held and cjson.decode(held).version or nil
if expected == '' then
  if held then
    return {'conflict', current}
  end
  local live = redis.call('HGET', items, id)
  if live then
    return {'conflict', cjson.decode(live).version}
  end
elseif current ~= tonumber(expected) then
  return {'conflict', current}
end

if action == 'cancel' then
  redis.call('HDEL', waiting, id)
  redis.call('ZREM', due, id)
  return {'cancelled'}
end
if not tonumber(due_ms) then
  return redis.error_reply('ERR due time must be a number of milliseconds')
end
redis.call('HSET', waiting, id, item_json)
redis.call('ZADD', due, due_ms, id)
if idem then
  redis.call('HSET', idem, 'fingerprint', fingerprint, 'id', id, 'version', version)
  redis.call('EXPIRE', idem, ttl)
end
return {'scheduled'}
