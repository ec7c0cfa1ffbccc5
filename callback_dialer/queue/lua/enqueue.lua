-- A missed call: open a callback for the number, or merge into its open one.
-- P: number caller_id name category source missed_at call_id trunk weights{} ranks{} day hour
--    due_at area (the caller's area from the CRM hook, or '')
-- A new callback that an active outage covers is held (not dialled) until the outage ends;
-- a repeat call merges into the open callback as it is (held or not).
-- promised_by: when the IVR's offer said we would call (epoch, or ''); the first promise stays.
-- caller_id is set when the caller typed another number to be called back on (P.number): the
-- callback answers to both, so a later call from either merges into it and either getting
-- through closes it.
local function weight(category) return tonumber(P.weights[category] or 0) end
local function rank(source) return tonumber(P.ranks[source] or 0) end

if P.call_id ~= nil and P.call_id ~= '' then
  if redis.call('ZSCORE', K.seen(), P.call_id) then
    return cjson.encode({result = 'duplicate', id = redis.call('HGET', K.open(), P.number) or ''})
  end
  redis.call('ZADD', K.seen(), fmt(NOW), P.call_id)
  redis.call('ZREMRANGEBYSCORE', K.seen(), '-inf', fmt(NOW - 7 * 86400))
end

local missed_at = tonumber(P.missed_at)
stat(P.day, 'missed:total', 1)
stat(P.day, 'missed:cat:' .. P.category, 1)
stat(P.day, 'missed:src:' .. P.source, 1)
stat(P.day, 'missed:hour:' .. P.hour, 1)

local function log_missed(id, merged)
  redis.call('XADD', K.missed(P.day), '*', 'at', fmt(missed_at), 'call_id', P.call_id or '',
    'number', P.number, 'category', P.category, 'source', P.source, 'callback', id,
    'merged', merged)
  redis.call('EXPIRE', K.missed(P.day), KEEP)
end

local CALLER = P.caller_id or ''

-- Point a number at this open callback unless another open callback already owns it.
local function claim_number(number, id)
  local other = redis.call('HGET', K.open(), number)
  if other and other ~= id then
    local o = load(other)
    if o and OPEN[o.state] then return false end
  end
  redis.call('HSET', K.open(), number, id)
  redis.call('ZADD', K.number(number), fmt(NOW), id)
  redis.call('ZREMRANGEBYSCORE', K.number(number), '-inf', fmt(NOW - 2 * KEEP))
  redis.call('EXPIRE', K.number(number), 2 * KEEP)
  return true
end

local id = redis.call('HGET', K.open(), P.number)
local by_caller = false
if not id and CALLER ~= '' then
  id = redis.call('HGET', K.open(), CALLER)
  by_caller = true
end
if id then
  local r = load(id)
  if r and OPEN[r.state] then
    local fields = {}
    if CALLER ~= '' and r.state ~= 'dialing' then
      if by_caller and r.number ~= P.number then
        -- The caller's latest word: call them back on the number they just typed. The old
        -- target stops answering for this callback unless it is their caller ID.
        local old = r.number
        if old ~= CALLER and redis.call('HGET', K.open(), old) == id then
          redis.call('HDEL', K.open(), old)
        end
        fields.number = P.number
        fields.trunk = P.trunk or r.trunk
        fields.caller_id = CALLER
        claim_number(P.number, id)
      elseif (r.caller_id == nil or r.caller_id == '') and r.number ~= CALLER then
        if claim_number(CALLER, id) then fields.caller_id = CALLER end
      end
    end
    if (r.promised_by == nil or r.promised_by == '') and (P.promised_by or '') ~= '' then
      fields.promised_by = fmt(tonumber(P.promised_by))
    end
    fields.missed_count = tostring(tonumber(r.missed_count) + 1)
    local first = tonumber(r.first_missed)
    if missed_at < first then first = missed_at end
    fields.first_missed = fmt(first)
    if missed_at > tonumber(r.last_missed) then fields.last_missed = fmt(missed_at) end
    local category = r.category
    if weight(P.category) > weight(category) then category = P.category end
    fields.category = category
    if fields.number ~= nil then
      record_change(r, 'number_changed', P.source, {number = fields.number, previous = r.number})
    end
    if rank(P.source) > rank(r.source) then fields.source = P.source end
    if (r.name == nil or r.name == '') and P.name ~= '' then fields.name = P.name end
    if r.pinned ~= '1' then fields.score = fmt(first - weight(category)) end
    local state = r.state
    -- They called again, so they are reachable now: a retry wait ends early.
    if state == 'scheduled' and (P.due_at == nil or P.due_at == '') then state = 'pending' end
    if state == 'dialing' then
      -- Keep the claim as it is; only the facts change.
      unindex(r)
      for k, v in pairs(fields) do r[k] = v end
      index(r)
      r.updated_at = fmt(NOW)
      save(r)
      record_change(r, 'merged', P.source, {missed_at = missed_at, category = P.category,
        call_id = P.call_id or '', queue = P.queue or ''})
    else
      if state == 'scheduled' then fields.next_at = r.next_at end
      transition(r, state, fields, 'merged', P.source,
        {missed_at = missed_at, category = P.category, call_id = P.call_id or '',
         queue = P.queue or ''})
    end
    if r.state ~= 'held' then redis.call('ZADD', K.age(), fmt(first), id) end
    log_missed(id, '1')
    return cjson.encode({result = 'merged', id = id, state = r.state, next_at = r.next_at})
  end
end

id = 'cb-' .. redis.call('INCR', K.seq())
local r = {
  id = id, number = P.number, name = P.name or '', category = P.category, source = P.source,
  state = 'pending', reason = '', first_missed = fmt(missed_at), last_missed = fmt(missed_at),
  missed_count = '1', attempts = '0', score = fmt(missed_at - weight(P.category)),
  created_at = fmt(NOW), updated_at = fmt(NOW), next_at = '', closed_at = '',
  trunk = P.trunk or '', agent = '', stage = '', claimed_by = '', claim_token = '',
  lease_until = '', first_dialed_at = '', pinned = '0', note = P.note or '',
  day = P.day, attempt_log = '[]', queue = P.queue or '', call_id = P.call_id or '',
  caller_id = CALLER,
  promised_by = ((P.promised_by or '') ~= '' and fmt(tonumber(P.promised_by))) or '',
}
local outage = nil
if P.source ~= 'manual' then outage = covering_outage(P.category, P.number, P.area) end
if outage ~= nil then
  r.state = 'held'
  r.outage = outage
  redis.call('HINCRBY', K.outage(outage), 'held', 1)
  stat(P.day, 'held:total', 1)
  stat(P.day, 'held:cat:' .. P.category, 1)
elseif P.due_at ~= nil and P.due_at ~= '' then
  r.state = 'scheduled'
  r.next_at = fmt(tonumber(P.due_at))
end
redis.call('HSET', K.open(), P.number, id)
-- Every callback a number ever had, for finding them by number (the page's search); kept as
-- long as the oldest of them can be.
redis.call('ZADD', K.number(P.number), fmt(NOW), id)
redis.call('ZREMRANGEBYSCORE', K.number(P.number), '-inf', fmt(NOW - 2 * KEEP))
redis.call('EXPIRE', K.number(P.number), 2 * KEEP)
if CALLER ~= '' and not claim_number(CALLER, id) then
  -- Their caller ID has an open callback of its own: that one keeps answering to it.
  r.caller_id = CALLER
end
redis.call('ZADD', K.age(), r.first_missed, id)
redis.call('ZADD', K.day(P.day), r.first_missed, id)
redis.call('EXPIRE', K.day(P.day), KEEP)
redis.call('HINCRBY', K.counts(), r.state .. ':' .. r.category, 0)
index(r)
save(r)
if outage ~= nil then
  -- 'held' instead of 'created': receivers and the SMS learn it waits for the outage.
  record_change(r, 'held', P.source,
    {missed_at = missed_at, outage = outage, call_id = P.call_id or '', queue = P.queue or ''})
else
  record_change(r, 'created', P.source,
    {missed_at = missed_at, call_id = P.call_id or '', queue = P.queue or ''})
end
log_missed(id, '0')
return cjson.encode({result = 'created', id = id, state = r.state, next_at = r.next_at})
