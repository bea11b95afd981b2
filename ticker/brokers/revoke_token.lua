-- Revoke, rotate or migrate one token, with its audit entry.
-- KEYS: tokens by name, names by digest, audit stream.
-- ARGV: operation ('revoke', 'rotate' or 'migrate'), name, audit entry JSON, audit MINID,
--       then for 'rotate' the new digest, for 'migrate' the roles and editions as JSON.
-- A revoked token keeps its record and its digest, so its holder hears "revoked"; a
-- rotated-out digest still leads to the name, and no longer matches the record's digest.
local op, name, entry, minid = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local unready = audit_ready(KEYS[3])
if unready then
  return unready
end
local stored = redis.call('HGET', KEYS[1], name)
if not stored then
  return 0
end
local record = cjson.decode(stored)
if record.revoked then
  return 0
end
if op == 'revoke' then
  record.revoked = true
elseif op == 'rotate' then
  if redis.call('HEXISTS', KEYS[2], ARGV[5]) == 1 then
    return -1
  end
  record.digest = ARGV[5]
  redis.call('HSET', KEYS[2], ARGV[5], name)
elseif op == 'migrate' then
  if record.roles ~= nil and record.roles ~= cjson.null then
    return 0
  end
  record.roles = cjson.decode(ARGV[5])
  record.editions = cjson.decode(ARGV[6])
else
  return redis.error_reply('ERR unknown token operation')
end
redis.call('HSET', KEYS[1], name, cjson.encode(record))
audit_append(KEYS[3], entry, minid)
return 1
