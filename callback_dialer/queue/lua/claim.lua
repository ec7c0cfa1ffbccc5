-- Take the best ready callback among P.categories, for P.lease seconds.
-- P: categories[] token claimer lease trunks[]|nil exclude[]|nil held[]|nil scan below|nil
-- below: take the best only if its score is lower (a live caller in Asterisk's queue scores
-- that, less the handicap: dispatch/turns.py); else 'held' with the best's score. In this
-- script, so a callback written between the dialer's look and the claim cannot slip past it.
if fenced(true) then return cjson.encode({result = 'fenced'}) end  -- leader lease
promote_due(200)
local held = {}
for _, id in ipairs(P.held or {}) do held[id] = true end
recover_leases(200, held)

local trunks = nil
if P.trunks ~= nil and P.trunks ~= cjson.null then
  trunks = {}
  for _, t in ipairs(P.trunks) do trunks[t] = true end
end
local exclude = {}
for _, n in ipairs(P.exclude or {}) do exclude[n] = true end
local filtered = trunks ~= nil or next(exclude) ~= nil
local scan = tonumber(P.scan or 50)

local best_id, best_score = nil, nil
for _, category in ipairs(P.categories) do
  local key = K.ready(category)
  if filtered then
    local items = redis.call('ZRANGE', key, 0, scan - 1, 'WITHSCORES')
    for i = 1, #items, 2 do
      local id, score = items[i], tonumber(items[i + 1])
      if best_score ~= nil and score >= best_score then break end
      local fields = redis.call('HMGET', K.callback(id), 'number', 'trunk')
      if not exclude[fields[1]] and (trunks == nil or trunks[fields[2]]) then
        best_id, best_score = id, score
        break
      end
    end
  else
    local head = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    if #head == 2 then
      local score = tonumber(head[2])
      if best_score == nil or score < best_score then best_id, best_score = head[1], score end
    end
  end
end
if best_id == nil then return cjson.encode({result = 'empty'}) end
local below = tonumber(P.below)
if below ~= nil and best_score >= below then
  return cjson.encode({result = 'held', score = best_score})
end

local r = load(best_id)
transition(r, 'dialing', {
  claim_token = P.token, claimed_by = P.claimer, lease_until = fmt(NOW + tonumber(P.lease)),
  stage = 'claimed', stage_at = fmt(NOW), agent = P.agent or '',
}, 'claimed', '', {claimed_by = P.claimer, agent = P.agent or ''})
return cjson.encode({result = 'claimed', callback = public(r)})
