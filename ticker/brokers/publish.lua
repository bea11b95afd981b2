-- Publish one change of one edition atomically: idempotency check, version check,
-- offset, item, expiry, log entry, live announcement and idempotency record.
-- KEYS: meta, items, log, expiry[, idempotency record]
-- ARGV: candidate epoch, kind, item id, expected version, item JSON, event body,
--       editor, expiry ms (or ''), history size, live channel, fingerprint, idempotency ttl
local meta, items, log, expiry, idem = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local candidate, kind, id, expected, item_json, body, editor, expires_ms, history, channel,
  fingerprint, ttl = unpack(ARGV)

if idem then
  local seen = redis.call('HMGET', idem, 'fingerprint', 'item')
  if seen[1] then
    if seen[1] == fingerprint then
      return {'replayed', seen[2]}
    end
    return {'mismatch'}
  end
end

local stored = redis.call('HGET', items, id)
if kind == 'posted' then
  if stored then
    return {'conflict', cjson.decode(stored).version}
  end
elseif not stored then
  return {'conflict'}
else
  local version = cjson.decode(stored).version
  if version ~= tonumber(expected) then
    return {'conflict', version}
  end
end

local epoch = edition_epoch(meta, log, candidate)
local offset = redis.call('HINCRBY', meta, 'offset', 1)
if kind == 'posted' or kind == 'corrected' then
  redis.call('HSET', items, id, item_json)
  if expires_ms ~= '' then
    redis.call('ZADD', expiry, expires_ms, id)
  else
    redis.call('ZREM', expiry, id)
  end
else
  redis.call('HDEL', items, id)
  redis.call('ZREM', expiry, id)
end

local payload = '{"type":"event","cursor":"' .. epoch .. ':' .. offset .. '",' .. body
redis.call('XADD', log, 'MAXLEN', history, offset .. '-0', 'event', payload, 'editor', editor)
redis.call('PUBLISH', channel, payload)
if idem then
  redis.call('HSET', idem, 'fingerprint', fingerprint, 'item', item_json)
  redis.call('EXPIRE', idem, ttl)
end
return {'published', epoch, offset}
