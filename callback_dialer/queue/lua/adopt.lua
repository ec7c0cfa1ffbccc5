-- Take over the claims of callbacks whose calls are up in Asterisk but followed by no live
-- dialer (a previous run killed, a leader replaced): each gets a new claim token held by the
-- caller, under the caller's leader lease. P: claimer lease reclaim items[{id token agent
-- stage stage_at}]; a stage the record already has keeps its stage_at (when it began), a new
-- one begins at stage_at or now. Per item: 'adopted' (it was claimed by someone else: the
-- token changes hands), 'reclaimed' (its lease had run out and it was offered again, though
-- its call never ended: with P.reclaim, claimed again, so nobody dials it a second time),
-- 'closed' (finished, or settled otherwise: the call is left alone, its number not dialled
-- while it is up), 'gone'.
if fenced(true) then return cjson.encode({result = 'fenced'}) end  -- leader lease
-- A claim that ran out with nobody's outcome (lib.lua, recover_leases): offered again at
-- once, or, when a call had been placed, scheduled for the retry delay as "outcome unknown"
-- (its claim kept in last_claim, the unknown noted in the attempt log).
local function lapsed(r)
  return (r.state == 'pending' and r.reason == 'lease_expired')
    or (r.state == 'scheduled' and r.reason == 'outcome_unknown' and (r.last_claim or '') ~= '')
end

local out = {}
local lease_until = fmt(NOW + tonumber(P.lease))
for _, item in ipairs(P.items) do
  local r = load(item.id)
  local result
  if r == nil then
    result = {id = item.id, result = 'gone'}
  elseif r.state ~= 'dialing' and not (P.reclaim and lapsed(r)) then
    -- Finished, or settled by an attempt whose channels are still going away: a retry, a
    -- release. Only a claim that ran out (nobody recorded anything) is taken back.
    result = {id = item.id, result = 'closed', state = r.state, number = r.number}
  else
    local fields = {claim_token = item.token, claimed_by = P.claimer, lease_until = lease_until}
    if item.agent ~= nil and item.agent ~= '' then fields.agent = item.agent end
    if item.stage ~= nil and item.stage ~= '' and item.stage ~= r.stage then
      fields.stage = item.stage
      fields.stage_at = fmt(tonumber(item.stage_at or NOW))
    end
    local detail = {from = r.claimed_by or '', agent = fields.agent or r.agent or '',
      stage = fields.stage or r.stage or ''}
    if r.state == 'dialing' then
      redis.call('ZADD', K.leases(), lease_until, r.id)
      for k, v in pairs(fields) do r[k] = v end
      r.updated_at = fmt(NOW)
      save(r)
      record_change(r, 'adopted', 'adopted', detail)
      result = {id = item.id, result = 'adopted', callback = public(r)}
    else
      if fields.stage == nil then
        fields.stage = item.stage or 'claimed'
        fields.stage_at = fmt(tonumber(item.stage_at or NOW))
      end
      if r.reason == 'outcome_unknown' then
        -- The call was not unknown after all: it is up, and followed from now. Its outcome
        -- will be the one entry for this attempt in the log.
        local log = cjson.decode(r.attempt_log or '[]')
        if #log > 0 and log[#log].outcome == 'outcome_unknown' then table.remove(log) end
        fields.attempt_log = #log > 0 and cjson.encode(log) or '[]'  -- {} is not a list
        fields.last_outcome = ''
        fields.last_claim = ''
      end
      transition(r, 'dialing', fields, 'adopted', 'adopted', detail)
      result = {id = item.id, result = 'reclaimed', callback = public(r)}
    end
  end
  out[#out + 1] = result
end
return cjson.encode({result = 'ok', items = out})
