-- Shared by the scripts that change items or tokens: append the change's audit entry to a
-- stream (auto ID: Redis's clock orders it), dropping entries older than the retention.
-- XADD with MINID needs Redis 6.2.

-- Called with the checks, before any write: appending to a stream, or to nothing yet,
-- cannot fail afterwards, so the change and its entry are written together or not at all.
local function audit_ready(stream)
  local kind = redis.call('TYPE', stream)
  kind = type(kind) == 'table' and kind.ok or kind
  if kind ~= 'stream' and kind ~= 'none' then
    return redis.error_reply('ERR the audit trail ' .. stream .. ' is not a stream')
  end
  return nil
end

local function audit_append(stream, entry, minid)
  redis.call('XADD', stream, 'MINID', minid, '*', 'entry', entry)
end
