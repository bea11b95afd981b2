-- Publish one change of one edition atomically: idempotency check, version check,
-- offset, item, expiry, log entry, audit entry, live announcement and idempotency record.
-- Every check, and every command that can fail (XADD), comes before any other write:
-- a script that stops with an error must leave nothing behind, as Redis does not roll back.
-- A post may release a scheduled item (claiming it: only the first release of a version
-- passes), and a pinned item is refused when the edition has its fill of pinned ones.
-- KEYS: meta, items, log, expiry, audit, pinned, scheduled (due times), scheduled items
--       [, idempotency record]
-- ARGV: candidate epoch, kind, item id, expected version, item JSON, event body,
--       editor, expiry ms (or ''), history size, live channel, fingerprint, idempotency ttl,
--       item version, audit entry JSON, audit MINID, pinned ('1' or '0'),
--       pin limit (or ''), scheduled version (or ''), archive base, archive key,
--       archive term...
local meta, items, log, expiry, audit, pinned, due, waiting, idem =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local candidate, kind, id, expected, item_json, body, editor, expires_ms, history, channel,
  fingerprint, ttl, version, audit_entry, audit_minid, pin, max_pinned, scheduled_version =
  unpack(ARGV)

local function whole(value, least)
  local n = tonumber(value)
  return n and n == math.floor(n) and n >= least and n or nil
end

history = whole(history, 1)
if not history then
  return redis.error_reply('ERR history must be a whole number of at least 1')
end
if expires_ms ~= '' and not tonumber(expires_ms) then
  return redis.error_reply('ERR expiry must be a number of milliseconds')
end
if kind ~= 'posted' and kind ~= 'corrected' and kind ~= 'withdrawn' and kind ~= 'expired' then
  return redis.error_reply('ERR unknown change kind')
end
if not whole(audit_minid, 0) then
  return redis.error_reply('ERR audit MINID must be a whole number of milliseconds')
end
local unready = audit_ready(audit)
if unready then
  return unready
end
if idem and not (whole(ttl, 1) and whole(version, 1)) then
  return redis.error_reply('ERR idempotency ttl and item version must be whole numbers')
end

if idem then
  local seen = redis.call('HMGET', idem, 'fingerprint', 'id', 'version', 'item')
  if seen[1] then
    if seen[1] ~= fingerprint then
      return {'mismatch'}
    end
    if seen[4] then -- a record from before records were slimmed down
      return {'replayed', seen[4]}
    end
    return {'replayed-id', seen[2], seen[3],
      redis.call('HGET', items, seen[2]) or redis.call('HGET', waiting, seen[2]) or ''}
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
  local current = cjson.decode(stored).version
  if current ~= tonumber(expected) then
    return {'conflict', current}
  end
end
if scheduled_version ~= '' then
  local held = redis.call('HGET', waiting, id)
  if not held then
    return {'conflict'}
  end
  local current = cjson.decode(held).version
  if current ~= tonumber(scheduled_version) then
    return {'conflict', current}
  end
end
local upsert = kind == 'posted' or kind == 'corrected'
if upsert and pin == '1' and max_pinned ~= '' then
  local others = redis.call('SCARD', pinned) - redis.call('SISMEMBER', pinned, id)
  if others >= tonumber(max_pinned) then
    return {'pinlimit', max_pinned}
  end
end

-- The log first: it is the only write that can still fail (an ID at or below the
-- stream's last one), and then it fails before anything was written.
local epoch = redis.call('HGET', meta, 'epoch')
local offset
if epoch then
  offset = (tonumber(redis.call('HGET', meta, 'offset')) or 0) + 1
else
  -- A missing epoch means the log was lost (or never existed): a new one starts.
  epoch, offset = candidate, 1
  redis.call('DEL', log)
end
local payload = '{"type":"event","cursor":"' .. epoch .. ':' .. offset .. '",' .. body
redis.call('XADD', log, 'MAXLEN', history, offset .. '-0', 'event', payload, 'editor', editor)
audit_append(audit, audit_entry, audit_minid)

redis.call('HSET', meta, 'epoch', epoch, 'offset', offset)
if upsert then
  redis.call('HSET', items, id, item_json)
  if expires_ms ~= '' then
    redis.call('ZADD', expiry, expires_ms, id)
  else
    redis.call('ZREM', expiry, id)
  end
  if pin == '1' then
    redis.call('SADD', pinned, id)
  else
    redis.call('SREM', pinned, id)
  end
else
  redis.call('HDEL', items, id)
  redis.call('ZREM', expiry, id)
  redis.call('SREM', pinned, id)
end
if scheduled_version ~= '' then
  redis.call('HDEL', waiting, id)
  redis.call('ZREM', due, id)
end
archive_put(ARGV[19], id, tonumber(version), ARGV[20], item_json, {unpack(ARGV, 21)})
redis.call('PUBLISH', channel, payload)
if idem then
  -- Only what a replay needs: the item itself is in the items hash or the log.
  redis.call('HSET', idem, 'fingerprint', fingerprint, 'id', id, 'version', version)
  redis.call('EXPIRE', idem, ttl)
end
return {'published', epoch, offset}
