-- One round trip per request: the name a digest leads to, and that name's record.
-- KEYS: names by digest, tokens by name. ARGV: digest
local name = redis.call('HGET', KEYS[1], ARGV[1])
if not name then
  return false
end
return {name, redis.call('HGET', KEYS[2], name) or ''}
