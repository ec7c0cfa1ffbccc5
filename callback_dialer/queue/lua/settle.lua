-- End a claim: done, failed, back to ready, or scheduled for a retry.
-- P: id token state reason next_at attempt{}|nil counted agent talk_seconds event
if fenced(false) then return cjson.encode({result = 'fenced'}) end  -- leader lease
local r = load(P.id)
-- recorded: the fate the dialplan wrote for the call placed under this claim (fates/<id>),
-- applied by a dialer that did not follow the call; it may find the lease already run out
-- ("outcome unknown", scheduled), and still settles that claim, and no other.
local late = P.recorded and r ~= nil and r.state == 'scheduled'
  and r.reason == 'outcome_unknown' and (r.last_claim or '') == P.token and P.token ~= ''
if not held_by(r, P.token) and not late then
  return cjson.encode({result = 'lost', state = r and r.state or 'gone',
    reason = r and r.reason or ''})
end
local fields = {}
if P.attempt ~= nil and P.attempt ~= cjson.null then
  local log = cjson.decode(r.attempt_log or '[]')
  log[#log + 1] = P.attempt
  fields.attempt_log = cjson.encode(log)
  if P.attempt.counted then fields.attempts = tostring(tonumber(r.attempts) + 1) end
  fields.last_outcome = P.attempt.outcome or ''
end
if P.agent ~= nil and P.agent ~= '' then fields.agent = P.agent end
if P.state == 'scheduled' then fields.next_at = fmt(tonumber(P.next_at)) end
transition(r, P.state, fields, P.event or P.state, P.reason,
  {attempt = P.attempt, next_at = P.next_at})
if P.state == 'done' then
  stat(r.day, 'done:total', 1)
  stat(P.today, 'done:on_day', 1)
  stat(P.today, 'done:hour:' .. P.hour, 1)
elseif P.state == 'failed' then
  stat(r.day, 'failed:total', 1)
  stat(r.day, 'failed:reason:' .. (P.reason or ''), 1)
end
return cjson.encode({result = 'ok', callback = public(r)})
