-- Outage mode: declare an outage, end it, and settle its held callbacks in bounded batches.
-- P: op (declare | end | drop | release) id ...
--   declare: categories[] prefixes[] areas[] message expected_end   (idempotent by id)
--   end:     choice (drop | release) per_hour
--   drop:    limit                       release: items[{id, due}] (due from the caller's
--                                        calling hours, in the usual order, capped per hour)
local function outage_event(o, event, detail)
  redis.call('XADD', K.events(), 'MAXLEN', '~', EVENTS_MAX, '*',
    'id', o.id, 'event', event, 'state', o.state, 'reason', o.end_choice or '',
    'actor', ACTOR, 'category', o.categories or '[]', 'number', '', 'at', fmt(NOW),
    'detail', cjson.encode(detail or {}))
end

local function load_outage(id)
  local flat = redis.call('HGETALL', K.outage(id))
  if #flat == 0 then return nil end
  local o = {}
  for i = 1, #flat, 2 do o[flat[i]] = flat[i + 1] end
  return o
end

local function finish_if_empty(o)
  if o.state == 'ending' and redis.call('ZCARD', K.held(o.id)) == 0 then
    o.state = 'ended'
    redis.call('HSET', K.outage(o.id), 'state', 'ended')
    outage_event(o, 'outage_settled', {released = tonumber(o.released or 0),
      dropped = tonumber(o.dropped or 0)})
  end
end

local o = load_outage(P.id)
if P.op == 'declare' then
  if o ~= nil then return cjson.encode({result = 'exists', outage = o}) end
  o = {
    id = P.id, state = 'active', categories = cjson.encode(P.categories),
    prefixes = cjson.encode(P.prefixes), areas = cjson.encode(P.areas),
    message = P.message or '', expected_end = P.expected_end or '',
    declared_by = ACTOR, declared_at = fmt(NOW), end_choice = '', release_per_hour = '0',
    ended_by = '', ended_at = '', held = '0', released = '0', dropped = '0',
  }
  local flat = {}
  for k, v in pairs(o) do
    flat[#flat + 1] = k
    flat[#flat + 1] = tostring(v)
  end
  redis.call('HSET', K.outage(o.id), unpack(flat))
  redis.call('ZADD', K.outages(), fmt(NOW), o.id)
  redis.call('ZADD', K.outages_active(), fmt(NOW), o.id)
  stat(P.today, 'outages:declared', 1)
  outage_event(o, 'outage_declared', {categories = P.categories, prefixes = P.prefixes,
    areas = P.areas, message = o.message, expected_end = o.expected_end})
  return cjson.encode({result = 'declared', outage = o})
end

if o == nil then return cjson.encode({result = 'not_found'}) end

if P.op == 'end' then
  if o.state ~= 'active' then return cjson.encode({result = 'not_active', outage = o}) end
  o.state = 'ending'
  o.end_choice = P.choice
  o.release_per_hour = tostring(tonumber(P.per_hour or 0))
  o.ended_by = ACTOR
  o.ended_at = fmt(NOW)
  redis.call('HSET', K.outage(o.id), 'state', o.state, 'end_choice', o.end_choice,
    'release_per_hour', o.release_per_hour, 'ended_by', o.ended_by, 'ended_at', o.ended_at)
  -- From now on new missed calls are dialled as usual.
  redis.call('ZREM', K.outages_active(), o.id)
  outage_event(o, 'outage_ended', {choice = o.end_choice,
    per_hour = tonumber(o.release_per_hour), held = redis.call('ZCARD', K.held(o.id))})
  finish_if_empty(o)
  return cjson.encode({result = 'ok', outage = o})
end

if o.state ~= 'ending' then return cjson.encode({result = 'not_ending', outage = o}) end
local done = 0
local settled = {}
if P.op == 'drop' and o.end_choice == 'drop' then
  local ids = redis.call('ZRANGE', K.held(o.id), 0, tonumber(P.limit) - 1)
  for _, id in ipairs(ids) do
    local r = load(id)
    if r ~= nil and r.state == 'held' and r.outage == o.id then
      transition(r, 'cancelled', {}, 'outage_dropped', 'outage_over', {outage = o.id})
      stat(r.day, 'cancelled:total', 1)
      stat(r.day, 'outage_dropped:total', 1)
      done = done + 1
      settled[#settled + 1] = id
    else
      redis.call('ZREM', K.held(o.id), id)
    end
  end
  o.dropped = tostring(redis.call('HINCRBY', K.outage(o.id), 'dropped', done))
elseif P.op == 'release' and o.end_choice == 'release' then
  for _, item in ipairs(P.items) do
    local r = load(item.id)
    if r ~= nil and r.state == 'held' and r.outage == o.id then
      transition(r, 'scheduled', {next_at = fmt(tonumber(item.due))}, 'outage_released',
        'outage_over', {outage = o.id, due = tonumber(item.due)})
      redis.call('ZADD', K.age(), r.first_missed, r.id)
      stat(r.day, 'outage_released:total', 1)
      done = done + 1
      settled[#settled + 1] = item.id
    else
      redis.call('ZREM', K.held(o.id), item.id)
    end
  end
  o.released = tostring(redis.call('HINCRBY', K.outage(o.id), 'released', done))
else
  return cjson.encode({result = 'wrong_choice', outage = o})
end
finish_if_empty(o)
if #settled == 0 then settled = cjson.empty_array or {} end
return cjson.encode({result = 'ok', done = done, outage = o, settled = settled,
  left = redis.call('ZCARD', K.held(o.id))})
