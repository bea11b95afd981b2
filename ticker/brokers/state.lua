-- Read an edition atomically. Given a cursor (ARGV[2], ARGV[3]) whose successors are all
-- still in the log, return just those events; otherwise the whole state, which the
-- follower resets to.
-- KEYS: meta, items, log
-- ARGV: candidate epoch[, since epoch, since offset]
local meta, items, log = KEYS[1], KEYS[2], KEYS[3]
local epoch = edition_epoch(meta, log, ARGV[1])
local offset = tonumber(redis.call('HGET', meta, 'offset') or '0')
local since = tonumber(ARGV[3])

if since and ARGV[2] == epoch and since <= offset then
  local entries = redis.call('XRANGE', log, '(' .. since .. '-0', '+')
  if since == offset or (entries[1] and offset_of(entries[1][1]) == since + 1) then
    return {epoch, offset, 'events', payloads(entries)}
  end
end
return {epoch, offset, 'state', redis.call('HVALS', items), payloads(redis.call('XRANGE', log, '-', '+'))}
