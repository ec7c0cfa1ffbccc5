-- This number got through (served_inbound / served_outbound): its open callback is done,
-- whatever state it is in, a running claim included (its token stops working).
-- P: number reason
local id = redis.call('HGET', K.open(), P.number)
if not id then return cjson.encode({result = 'none'}) end
local r = load(id)
if r == nil or not OPEN[r.state] then
  redis.call('HDEL', K.open(), P.number)
  return cjson.encode({result = 'none'})
end
local previous = r.state
transition(r, 'done', {}, P.reason, P.reason, {previous_state = previous})
stat(r.day, P.reason, 1)
return cjson.encode({result = 'closed', id = id, previous_state = previous})
