-- Shared by every queue script. Runs after the generated key helpers (K.*, TAG).
-- ARGV[2] is a JSON object with the arguments; every time comes from the caller's clock
-- (P.now), never from Redis, so a simulated day runs through the same scripts.
local P = cjson.decode(ARGV[2])
local NOW = tonumber(P.now)
local ACTOR = P.actor or 'system'
local KEEP = tonumber(P.keep_seconds or 7776000)
local HISTORY_MAX = tonumber(P.history_max or 500)
local EVENTS_MAX = 20000
local OPEN = {pending = true, scheduled = true, dialing = true, held = true}

local function fmt(t) return string.format('%.3f', t) end

local function load(id)
  local flat = redis.call('HGETALL', K.callback(id))
  if #flat == 0 then return nil end
  local r = {}
  for i = 1, #flat, 2 do r[flat[i]] = flat[i + 1] end
  return r
end

local function save(r)
  local flat = {}
  for k, v in pairs(r) do
    flat[#flat + 1] = k
    flat[#flat + 1] = tostring(v)
  end
  redis.call('HSET', K.callback(r.id), unpack(flat))
end

local function stat(day, field, delta)
  if day == nil or day == '' then return end
  redis.call('HINCRBY', K.stats(day), field, delta)
  redis.call('EXPIRE', K.stats(day), KEEP)
end

-- Each record sits in exactly one index, the one of its state.
local function unindex(r)
  if r.state == 'pending' then redis.call('ZREM', K.ready(r.category), r.id)
  elseif r.state == 'scheduled' then redis.call('ZREM', K.scheduled(), r.id)
  elseif r.state == 'dialing' then redis.call('ZREM', K.leases(), r.id)
  elseif r.state == 'held' then redis.call('ZREM', K.held(r.outage), r.id)
  end
  redis.call('HINCRBY', K.counts(), r.state .. ':' .. r.category, -1)
end

local function index(r)
  if r.state == 'pending' then redis.call('ZADD', K.ready(r.category), r.score, r.id)
  elseif r.state == 'scheduled' then redis.call('ZADD', K.scheduled(), r.next_at, r.id)
  elseif r.state == 'dialing' then redis.call('ZADD', K.leases(), r.lease_until, r.id)
  elseif r.state == 'held' then
    -- Held callbacks wait for their outage, not for an agent: out of the age index (no
    -- expiry, not "the oldest waiting") until released.
    redis.call('ZADD', K.held(r.outage), r.score, r.id)
    redis.call('ZREM', K.age(), r.id)
  else
    redis.call('ZADD', K.finished(), r.closed_at, r.id)
    redis.call('ZREM', K.age(), r.id)
    if redis.call('HGET', K.open(), r.number) == r.id then
      redis.call('HDEL', K.open(), r.number)
    end
    -- A callback to a number the caller typed answers to their caller ID too.
    if r.caller_id ~= nil and r.caller_id ~= '' and redis.call('HGET', K.open(), r.caller_id) == r.id then
      redis.call('HDEL', K.open(), r.caller_id)
    end
    redis.call('EXPIRE', K.callback(r.id), KEEP)
    redis.call('EXPIRE', K.history(r.id), KEEP)
  end
  redis.call('HINCRBY', K.counts(), r.state .. ':' .. r.category, 1)
end

local function record_change(r, event, reason, detail)
  local d = ''
  if detail ~= nil then d = cjson.encode(detail) end
  redis.call('XADD', K.history(r.id), 'MAXLEN', '~', HISTORY_MAX, '*',
    'at', fmt(NOW), 'event', event, 'state', r.state, 'reason', reason or '',
    'actor', ACTOR, 'detail', d)
  redis.call('XADD', K.events(), 'MAXLEN', '~', EVENTS_MAX, '*',
    'id', r.id, 'event', event, 'state', r.state, 'reason', reason or '', 'actor', ACTOR,
    'category', r.category, 'number', r.number, 'caller_id', r.caller_id or '', 'at', fmt(NOW),
    'detail', d)
end

-- Move a record to another state (or the same one with new fields), keeping every index,
-- counter and the history right. Finished records leave the open-number map and expire.
local function transition(r, state, fields, event, reason, detail)
  unindex(r)
  r.state = state
  for k, v in pairs(fields or {}) do r[k] = v end
  r.reason = reason or ''
  r.updated_at = fmt(NOW)
  if not OPEN[state] then
    r.closed_at = fmt(NOW)
    r.claim_token = ''
    r.claimed_by = ''
    r.lease_until = ''
    r.stage = ''
    r.stage_at = ''
    r.next_at = ''
  elseif state ~= 'dialing' then
    r.claim_token = ''
    r.claimed_by = ''
    r.lease_until = ''
    r.stage = ''
    r.stage_at = ''
  end
  if state ~= 'scheduled' then r.next_at = '' end
  index(r)
  save(r)
  record_change(r, event, reason, detail)
  return r
end

local function public(r)
  local out = {}
  for k, v in pairs(r) do
    if k ~= 'claim_token' then out[k] = v end
  end
  return out
end

-- Ready again: callbacks whose time has come, and claims whose dispatcher went silent.
-- Bounded batches: a burst is spread over several calls instead of one long script.
local function promote_due(limit)
  local due = redis.call('ZRANGEBYSCORE', K.scheduled(), '-inf', fmt(NOW), 'LIMIT', 0, limit)
  for _, id in ipairs(due) do
    local r = load(id)
    if r and r.state == 'scheduled' then
      transition(r, 'pending', {}, 'due', 'due')
    else
      redis.call('ZREM', K.scheduled(), id)
    end
  end
end

local function recover_leases(limit, held)
  local expired = redis.call('ZRANGEBYSCORE', K.leases(), '-inf', fmt(NOW), 'LIMIT', 0, limit)
  for _, id in ipairs(expired) do
    if not (held and held[id]) then
      local r = load(id)
      local placed = r and (r.stage or '') ~= '' and r.stage ~= 'claimed'
      if r and r.state == 'dialing' and placed then
        -- A call was placed (a stage past "claimed" is noted just before the Originate) and nobody
        -- stored its outcome: the customer may have been reached. Without the dialplan's
        -- fate record (dispatch/fates.py) nobody knows, so no redial before the normal
        -- retry delay; the claim is kept so a late record can still settle it.
        local delays = P.retry_delays or {300}
        local n = math.min(tonumber(r.attempts or 0) + 1, #delays)
        local log = cjson.decode(r.attempt_log or '[]')
        log[#log + 1] = {at = tonumber(fmt(NOW)), agent = r.agent or '',
          outcome = 'outcome_unknown', talk_seconds = 0, counted = false}
        transition(r, 'scheduled',
          {next_at = fmt(NOW + tonumber(delays[n])), last_claim = r.claim_token,
           attempt_log = cjson.encode(log), last_outcome = 'outcome_unknown'},
          'lease_expired', 'outcome_unknown', {claimed_by = r.claimed_by})
      elseif r and r.state == 'dialing' then
        transition(r, 'pending', {}, 'lease_expired', 'lease_expired',
          {claimed_by = r.claimed_by})
      else
        redis.call('ZREM', K.leases(), id)
      end
    end
  end
end

local function held_by(r, token)
  return r ~= nil and r.state == 'dialing' and token ~= nil and token ~= ''
    and r.claim_token == token
end

-- Fencing (the leader lease, lease.lua): once any dialer has led here, only the lease's
-- current holding may claim, renew or settle. P.fence = {instance, token}: the holding the
-- caller last had (nil: none). A leader that was replaced holds an older token and is refused
-- even when it does not know yet; with ``fresh`` (new work: a claim) the holding must also not
-- have run out by Redis's clock. Returns true when the caller must be refused.
local function fenced(fresh)
  local lease = redis.call('HMGET', K.leader(), 'holder', 'token', 'until')
  if not lease[2] then return false end  -- no leader lease in use (a queue on its own)
  local f = P.fence
  if f == nil or f == cjson.null then return true end
  if f.instance ~= lease[1] or tostring(f.token) ~= lease[2] then return true end
  if fresh then
    local t = redis.call('TIME')
    return tonumber(lease[3] or '0') <= tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return false
end

-- The active outage that covers a new missed call (nil: none). P.area: the caller's area
-- from the CRM lookup hook ('' when not asked or not known).
local function covering_outage(category, number, area)
  local ids = redis.call('ZRANGE', K.outages_active(), 0, -1)
  for _, oid in ipairs(ids) do
    local o = redis.call('HMGET', K.outage(oid), 'state', 'categories', 'prefixes', 'areas')
    if o[1] == 'active' then
      local covered = false
      for _, c in ipairs(cjson.decode(o[2] or '[]')) do
        if c == category then covered = true end
      end
      if covered then
        local prefixes = cjson.decode(o[3] or '[]')
        local areas = cjson.decode(o[4] or '[]')
        if #prefixes == 0 and #areas == 0 then return oid end
        for _, p in ipairs(prefixes) do
          if string.sub(number, 1, #p) == p then return oid end
        end
        if area ~= nil and area ~= '' then
          for _, a in ipairs(areas) do
            if a == area then return oid end
          end
        end
      end
    end
  end
  return nil
end
