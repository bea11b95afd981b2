-- Shared by the edition scripts: the epoch names one life of an edition's log.
-- A missing epoch means the log was lost (or never existed), so a new one starts
-- from offset 0 with an empty stream; an existing epoch is always kept.
local function edition_epoch(meta, log, candidate)
  local epoch = redis.call('HGET', meta, 'epoch')
  if epoch then
    return epoch
  end
  redis.call('DEL', log)
  redis.call('HSET', meta, 'epoch', candidate, 'offset', 0)
  return candidate
end

local function offset_of(stream_id)
  return tonumber(string.match(stream_id, '^(%d+)-'))
end

local function payloads(entries)
  local out = {}
  for i, entry in ipairs(entries) do
    local fields = entry[2]
    for j = 1, #fields, 2 do
      if fields[j] == 'event' then
        out[i] = fields[j + 1]
      end
    end
  end
  return out
end
