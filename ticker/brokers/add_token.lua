-- KEYS: tokens by name, names by digest. ARGV: name, digest, record JSON
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[3]) == 0 then
  return 0
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
return 1
