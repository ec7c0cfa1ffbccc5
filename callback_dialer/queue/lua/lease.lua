-- The leader lease: one hash, K.leader() = {holder, token, until}. ``until`` is in Redis's own
-- milliseconds (TIME), so every instance's lease is measured by one clock, never by theirs.
-- ``token`` only grows: HINCRBY at every acquisition, and the key never expires and is never
-- deleted (a release only empties ``holder``), so no two holdings ever share a token.
-- P: op (tick | release) instance token (the caller's, '' when it holds none) lease_ms
-- tick: renew when the caller holds it (also just after its ``until``: a takeover would have
-- changed the token), take it when it is free or has run out, else say who holds it.
local key = K.leader()
local cur = redis.call('HMGET', key, 'holder', 'token', 'until')
local holder, token, till = cur[1] or '', cur[2] or '0', tonumber(cur[3] or '0')
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local mine = holder ~= '' and holder == P.instance and P.token ~= nil and P.token ~= ''
  and tostring(P.token) == token

if P.op == 'release' then
  if not mine then return cjson.encode({result = 'not_holder', holder = holder, token = token}) end
  redis.call('HSET', key, 'holder', '', 'until', '0')
  return cjson.encode({result = 'released', token = token})
end

local lease = tonumber(P.lease_ms)
if mine then
  redis.call('HSET', key, 'until', tostring(now + lease))
  return cjson.encode({result = 'renewed', holder = holder, token = token, ms = lease})
end
if holder == '' or till <= now then
  local new = redis.call('HINCRBY', key, 'token', 1)
  redis.call('HSET', key, 'holder', P.instance, 'until', tostring(now + lease))
  return cjson.encode({result = 'acquired', holder = P.instance, token = tostring(new),
    ms = lease, previous = holder})
end
return cjson.encode({result = 'held', holder = holder, token = token, ms = till - now})
