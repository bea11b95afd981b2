-- Shared by the scripts that change items or tokens: append the change's audit entry to a
-- stream (auto ID: Redis's clock orders it), dropping entries older than the retention.
-- XADD with MINID needs Redis 6.2.
local function audit_append(stream, entry, minid)
  redis.call('XADD', stream, 'MINID', minid, '*', 'entry', entry)
end
