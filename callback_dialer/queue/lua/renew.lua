-- Extend a claim, and optionally note the call's stage. P: id token lease stage agent
if fenced(false) then return cjson.encode({result = 'fenced'}) end  -- leader lease
local r = load(P.id)
if not held_by(r, P.token) then
  return cjson.encode({result = 'lost', state = r and r.state or 'gone',
    reason = r and r.reason or ''})
end
redis.call('ZADD', K.leases(), fmt(NOW + tonumber(P.lease)), r.id)
local fields = {'lease_until', fmt(NOW + tonumber(P.lease))}
if P.stage ~= nil and P.stage ~= '' and P.stage ~= r.stage then
  fields[#fields + 1] = 'stage'
  fields[#fields + 1] = P.stage
  -- When the stage began: a dialer adopting this call later counts the talk time from it.
  fields[#fields + 1] = 'stage_at'
  fields[#fields + 1] = fmt(NOW)
  r.stage = P.stage
  if P.agent ~= nil and P.agent ~= '' then
    fields[#fields + 1] = 'agent'
    fields[#fields + 1] = P.agent
  end
  if P.stage == 'ringing_customer' and (r.first_dialed_at == nil or r.first_dialed_at == '') then
    fields[#fields + 1] = 'first_dialed_at'
    fields[#fields + 1] = fmt(NOW)
    local waited = NOW - tonumber(r.first_missed)
    redis.call('ZADD', K.ttc(r.day), fmt(waited), r.id)
    redis.call('EXPIRE', K.ttc(r.day), KEEP)
  end
  if P.stage == 'ringing_customer' then stat(P.today, 'callbacks:hour:' .. P.hour, 1) end
  redis.call('HSET', K.callback(r.id), unpack(fields))
  record_change(r, 'stage', P.stage, {agent = P.agent or ''})
else
  redis.call('HSET', K.callback(r.id), unpack(fields))
end
return cjson.encode({result = 'ok'})
