-- A call the IVR served itself: counted for the day (page, reports), never a callback.
-- P: call_id number category reason day hour at
if P.call_id ~= nil and P.call_id ~= '' then
  if redis.call('ZSCORE', K.seen(), P.call_id) then
    return cjson.encode({result = 'duplicate'})
  end
  redis.call('ZADD', K.seen(), fmt(NOW), P.call_id)
end
stat(P.day, 'selfservice:total', 1)
stat(P.day, 'selfservice:reason:' .. P.reason, 1)
stat(P.day, 'selfservice:cat:' .. P.category, 1)
-- In the day's list of calls, so the daily report has one row for it with its fate.
redis.call('XADD', K.missed(P.day), '*', 'at', fmt(tonumber(P.at)), 'call_id', P.call_id or '',
  'number', P.number or '', 'category', P.category, 'source', 'self_service', 'callback', '',
  'merged', '0', 'self_service', P.reason)
redis.call('EXPIRE', K.missed(P.day), KEEP)
return cjson.encode({result = 'counted'})
