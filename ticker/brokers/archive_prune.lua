-- Remove one batch of archive records posted before a key, live items excepted.
-- KEYS: archive all, archive index, archive items
-- ARGV: archive base, after (exclusive key, or ''), before (exclusive key), batch size
-- Returns: {records removed, last key examined or '' when none was}
local all, index, items = KEYS[1], KEYS[2], KEYS[3]
local base, after, before, batch = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local min = after == '' and '-' or '(' .. after
local keys = redis.call('ZRANGEBYLEX', all, min, '(' .. before, 'LIMIT', 0, batch)
local removed = 0
for _, key in ipairs(keys) do
  local id = string.sub(key, 15)
  local stored = redis.call('HGET', index, id)
  local record = stored and cjson.decode(stored) or {0, key}
  local live = false
  for i = 3, #record do
    if record[i] == 's:live' then
      live = true
    end
  end
  if not live then
    for i = 3, #record do
      redis.call('ZREM', base .. ':t:' .. record[i], key)
    end
    redis.call('ZREM', all, key)
    redis.call('HDEL', index, id)
    redis.call('HDEL', items, id)
    removed = removed + 1
  end
end
return {removed, keys[#keys] or ''}
