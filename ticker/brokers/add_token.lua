-- KEYS: tokens by name, names by digest, audit stream.
-- ARGV: name, digest, record JSON, audit entry JSON, audit MINID.
-- A revoked name may be given again: its old digest still leads to it, and reads as revoked.
local unready = audit_ready(KEYS[3])
if unready then
  return unready
end
local record = redis.call('HGET', KEYS[1], ARGV[1])
if record and not cjson.decode(record).revoked then
  return 0
end
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 1 then
  return -1
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
audit_append(KEYS[3], ARGV[4], ARGV[5])
return 1
