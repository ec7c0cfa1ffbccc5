-- This number got through (served_inbound / served_outbound): its open callback is done,
-- whatever state it is in, a running claim included (its token stops working).
-- P: number reason call_id at
-- call_id (optional) makes it idempotent: a call told twice (live and from the dialplan's
-- record in AstDB, or a record read again after a crash) closes at most once. at (optional):
-- when the caller got through; a callback whose last missed call came later is a new need
-- and stays open (records are applied after the fact, in the order the calls happened).
if P.call_id ~= nil and P.call_id ~= cjson.null and P.call_id ~= '' then
  local seen = 'served:' .. P.call_id
  if redis.call('ZSCORE', K.seen(), seen) then return cjson.encode({result = 'duplicate'}) end
  redis.call('ZADD', K.seen(), fmt(NOW), seen)
end
local id = redis.call('HGET', K.open(), P.number)
if not id then return cjson.encode({result = 'none'}) end
local r = load(id)
if r == nil or not OPEN[r.state] then
  redis.call('HDEL', K.open(), P.number)
  return cjson.encode({result = 'none'})
end
if P.at ~= nil and P.at ~= cjson.null and tonumber(r.last_missed) > tonumber(P.at) then
  return cjson.encode({result = 'later'})
end
local previous = r.state
transition(r, 'done', {}, P.reason, P.reason, {previous_state = previous})
stat(r.day, P.reason, 1)
return cjson.encode({result = 'closed', id = id, previous_state = previous})
