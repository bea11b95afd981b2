-- The archive: every item ever posted, at its latest version, found by its terms.
-- All keys derive from `base`, which carries the edition's hash tag (one cluster slot):
--   base:items     hash: id -> the item's latest JSON
--   base:index     hash: id -> JSON [version, key, term...] (what to take back on change)
--   base:all       sorted set of every record's key, all scored 0: ordered by the key's text
--   base:t:<term>  sorted set of the keys of the records that have the term
-- A key is `<created ms, 13 digits>:<id>`; terms are w:<word>, e:<editor>, s:<status>.
-- An older version than the one archived changes nothing; editors are never taken off.
local function archive_put(base, id, version, key, item_json, terms)
  local index = base .. ':index'
  local kept = {}
  local record = {version, key}
  for _, term in ipairs(terms) do
    kept[term] = true
    record[#record + 1] = term
  end
  local stored = redis.call('HGET', index, id)
  if stored then
    local old = cjson.decode(stored)
    if old[1] >= version then
      return 0
    end
    for i = 3, #old do
      local term = old[i]
      if not kept[term] then
        if string.sub(term, 1, 2) == 'e:' then
          kept[term] = true
          record[#record + 1] = term
        else
          redis.call('ZREM', base .. ':t:' .. term, key)
        end
      end
    end
  else
    redis.call('ZADD', base .. ':all', 0, key)
  end
  for _, term in ipairs(terms) do
    redis.call('ZADD', base .. ':t:' .. term, 0, key)
  end
  redis.call('HSET', base .. ':items', id, item_json)
  redis.call('HSET', index, id, cjson.encode(record))
  return 1
end
