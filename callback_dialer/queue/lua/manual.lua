-- Supervisor actions on one open callback. P: op id reason category weights{} due_at
local r = load(P.id)
if r == nil then return cjson.encode({result = 'not_found'}) end
if not OPEN[r.state] then return cjson.encode({result = 'not_open', state = r.state}) end
if P.op == 'cancel' then
  local previous = r.state
  transition(r, 'cancelled', {}, 'cancelled', P.reason, {previous_state = previous})
  stat(r.day, 'cancelled:total', 1)
  return cjson.encode({result = 'ok', previous_state = previous, callback = public(r)})
elseif P.op == 'category' then
  local old = r.category
  if old == P.category then return cjson.encode({result = 'ok', callback = public(r)}) end
  local fields = {category = P.category}
  if r.pinned ~= '1' then
    fields.score = fmt(tonumber(r.first_missed) - tonumber(P.weights[P.category] or 0))
  end
  if r.state == 'scheduled' then fields.next_at = r.next_at end
  if r.state == 'dialing' then
    fields.claim_token = r.claim_token
    fields.claimed_by = r.claimed_by
    fields.lease_until = r.lease_until
    fields.stage = r.stage
  end
  transition(r, r.state, fields, 'category_changed', P.reason or '', {from = old, to = P.category})
  return cjson.encode({result = 'ok', callback = public(r)})
elseif P.op == 'call_now' then
  if r.state == 'dialing' then return cjson.encode({result = 'busy', state = r.state}) end
  -- To the head of its category: pinned callbacks go first, in the order they were pinned.
  transition(r, 'pending', {pinned = '1', score = fmt(NOW - 1e10)}, 'call_now', P.reason or '')
  return cjson.encode({result = 'ok', callback = public(r)})
elseif P.op == 'schedule' then
  if r.state == 'dialing' then return cjson.encode({result = 'busy', state = r.state}) end
  transition(r, 'scheduled', {next_at = fmt(tonumber(P.due_at))}, 'scheduled', P.reason or '')
  return cjson.encode({result = 'ok', callback = public(r)})
end
return redis.error_reply('unknown op ' .. tostring(P.op))
