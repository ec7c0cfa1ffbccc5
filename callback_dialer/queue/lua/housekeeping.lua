-- Periodic upkeep: due callbacks, lost leases, callbacks past their expiry, old records.
-- P: expire_before limit held[]
promote_due(tonumber(P.limit))
local held = {}
for _, id in ipairs(P.held or {}) do held[id] = true end
recover_leases(tonumber(P.limit), held)
local expired = 0
local old = redis.call('ZRANGEBYSCORE', K.age(), '-inf', fmt(tonumber(P.expire_before)),
  'LIMIT', 0, tonumber(P.limit))
for _, id in ipairs(old) do
  local r = load(id)
  if r == nil or not OPEN[r.state] then
    redis.call('ZREM', K.age(), id)
  elseif r.state ~= 'dialing' then
    transition(r, 'failed', {}, 'failed', 'expired')
    stat(r.day, 'failed:total', 1)
    stat(r.day, 'failed:reason:expired', 1)
    expired = expired + 1
  end
end
local trimmed = redis.call('ZREMRANGEBYSCORE', K.finished(), '-inf', fmt(NOW - KEEP))
return cjson.encode({result = 'ok', expired = expired, trimmed = trimmed})
