"""The Lua scripts behind the Redis feed: one script per operation, so each is atomic
and two agents can never hold one item (Redis runs one script at a time).

Every script that returns an item returns `{'ok', id, <ITEM_FIELDS values>}`; a
refusal is `{'missing', id}` or `{'conflict', reason}`. Scripts that reach other
items (the popped id of `next`, the customer's open items, the sweeper's batch) build
those keys from the prefix: this needs one Redis server (or, with Cluster, a prefix
with a hash tag such as `{feedback}`).

Time comes from the caller (`now` epoch seconds and its ISO text), so a test can
move the clock and the sweeper's `now` is the only clock that expires leases.
"""

from __future__ import annotations

from sinks._desk import ITEM_FIELDS

_FIELDS = ", ".join(f"'{name}'" for name in ITEM_FIELDS)

PRELUDE = f"""
local function item(rec, id)
  local values = redis.call('HMGET', rec, {_FIELDS})
  local out = {{'ok', id}}
  for i = 1, #values do out[#out + 1] = values[i] end
  return out
end
local function emit(events, maxlen, ...)
  redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', ...)
end
"""

# KEYS: rec, feed, claimed, events, due, cust
# ARGV: id, json, digest, urgency, due_at, score, updated_at, events_maxlen, status, owner,
#       due_epoch ('' = none), customer_ref, repeat_count, prefix, rank-0 score
# Returns 1 = new, 2 = updated, 0 = unchanged (redelivery).
UPSERT_LUA = (
    PRELUDE
    + """
local rec, feed, claimed, events, due, cust = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local id, maxlen, status, due_epoch = ARGV[1], ARGV[8], ARGV[9], ARGV[11]
local ref, prefix = ARGV[12], ARGV[14]
if redis.call('EXISTS', rec) == 0 then
  local linked = ''
  if ref ~= '' then
    -- a repeat complaint: link to the customer's most pressing unresolved item,
    -- preferring one that is not itself a repeat (the first complaint of the matter)
    local best = nil
    for _, other in ipairs(redis.call('SMEMBERS', cust)) do
      local h = redis.call('HMGET', prefix .. ':rec:' .. other, 'status', 'linked_to', 'score')
      if other ~= id and (h[1] == 'open' or h[1] == 'claimed') then
        local key = {(h[2] and h[2] ~= '') and 1 or 0, tonumber(h[3]) or 0, other}
        if best == nil or key[1] < best[1] or (key[1] == best[1] and (key[2] < best[2]
            or (key[2] == best[2] and key[3] < best[3]))) then
          best = key
        end
      end
    end
    if best then
      linked = best[3]
      redis.call('HINCRBY', prefix .. ':rec:' .. linked, 'repeat_count', 1)
    end
    if status ~= 'resolved' then redis.call('SADD', cust, id) end
  end
  redis.call('HSET', rec, 'json', ARGV[2], 'digest', ARGV[3], 'urgency', ARGV[4],
             'due_at', ARGV[5], 'status', status, 'owner', ARGV[10], 'updated_at', ARGV[7],
             'score', ARGV[6], 'repeat_count', ARGV[13], 'customer_ref', ref,
             'lease_expires_at', '', 'breached', '0', 'escalated', '0', 'linked_to', linked)
  if status == 'open' then redis.call('ZADD', feed, ARGV[6], id) end
  if due_epoch ~= '' and status ~= 'resolved' then redis.call('ZADD', due, due_epoch, id) end
  if linked ~= '' then
    emit(events, maxlen, 'type', 'new', 'id', id, 'urgency', ARGV[4], 'linked_to', linked)
  else
    emit(events, maxlen, 'type', 'new', 'id', id, 'urgency', ARGV[4])
  end
  return 1
end
if redis.call('HGET', rec, 'digest') == ARGV[3] then
  return 0
end
-- status, owner, lease, breached, escalated, repeat_count and links are the desk's:
-- an update from the pipeline never touches them, and an escalated item stays urgent
local h = redis.call('HMGET', rec, 'status', 'escalated', 'breached')
local urgency, score = ARGV[4], ARGV[6]
if h[2] == '1' then urgency, score = 'urgent', ARGV[15] end
redis.call('HSET', rec, 'json', ARGV[2], 'digest', ARGV[3], 'urgency', urgency,
           'due_at', ARGV[5], 'updated_at', ARGV[7], 'score', score)
if h[1] == 'open' and not redis.call('ZSCORE', claimed, id) then
  redis.call('ZADD', feed, score, id)
end
if h[1] ~= 'resolved' and h[3] ~= '1' then
  if due_epoch ~= '' then
    redis.call('ZADD', due, due_epoch, id)
  else
    redis.call('ZREM', due, id)
  end
end
emit(events, maxlen, 'type', 'updated', 'id', id, 'urgency', urgency)
return 2
"""
)

# KEYS: feed, claimed, events
# ARGV: agent, lease_epoch, lease_iso, events_maxlen, prefix, now_iso
# Pops the lowest score; ids whose hash is no longer open (stale) are dropped.
NEXT_LUA = (
    PRELUDE
    + """
local feed, claimed, events = KEYS[1], KEYS[2], KEYS[3]
local agent, prefix = ARGV[1], ARGV[5]
while true do
  local popped = redis.call('ZPOPMIN', feed)
  if #popped == 0 then return false end
  local id = popped[1]
  local rec = prefix .. ':rec:' .. id
  local h = redis.call('HMGET', rec, 'status', 'urgency', 'score')
  if h[1] == 'open' then
    if not h[3] then redis.call('HSET', rec, 'score', popped[2]) end
    redis.call('HSET', rec, 'status', 'claimed', 'owner', agent,
               'lease_expires_at', ARGV[3], 'updated_at', ARGV[6])
    redis.call('ZADD', claimed, ARGV[2], id)
    emit(events, ARGV[4], 'type', 'claimed', 'id', id, 'urgency', h[2], 'owner', agent,
         'lease_expires_at', ARGV[3])
    return item(rec, id)
  end
end
"""
)

# KEYS: rec, feed, claimed, events
# ARGV: id, agent, lease_epoch, lease_iso, events_maxlen, now_epoch, now_iso
CLAIM_LUA = (
    PRELUDE
    + """
local rec, feed, claimed, events = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id, agent, maxlen = ARGV[1], ARGV[2], ARGV[5]
if redis.call('EXISTS', rec) == 0 then return {'missing', id} end
local h = redis.call('HMGET', rec, 'status', 'owner', 'urgency', 'score')
if h[1] == 'resolved' then return {'conflict', 'already resolved'} end
if h[1] == 'claimed' and h[2] == agent then
  -- claiming what one already holds renews the lease (a double click is harmless)
  redis.call('HSET', rec, 'lease_expires_at', ARGV[4], 'updated_at', ARGV[7])
  redis.call('ZADD', claimed, ARGV[3], id)
  return item(rec, id)
end
if h[1] == 'claimed' then
  local lease = tonumber(redis.call('ZSCORE', claimed, id))
  if lease and lease > tonumber(ARGV[6]) then return {'conflict', 'held by ' .. h[2]} end
  -- the lease ran out and the sweeper has not been by yet: say so, then take it
  emit(events, maxlen, 'type', 'released', 'id', id, 'urgency', h[3], 'owner', h[2],
       'reason', 'lease_expired')
end
local in_feed = redis.call('ZSCORE', feed, id)
if in_feed and not h[4] then redis.call('HSET', rec, 'score', in_feed) end
redis.call('ZREM', feed, id)
redis.call('ZADD', claimed, ARGV[3], id)
redis.call('HSET', rec, 'status', 'claimed', 'owner', agent, 'lease_expires_at', ARGV[4],
           'updated_at', ARGV[7])
emit(events, maxlen, 'type', 'claimed', 'id', id, 'urgency', h[3], 'owner', agent,
     'lease_expires_at', ARGV[4])
return item(rec, id)
"""
)

_HELD_BY_CALLER = """
if redis.call('EXISTS', rec) == 0 then return {'missing', id} end
local h = redis.call('HMGET', rec, 'status', 'owner', 'urgency', 'score', 'customer_ref')
if h[1] == 'resolved' then return {'conflict', 'already resolved'} end
if h[1] ~= 'claimed' or h[2] ~= agent then
  if h[1] == 'claimed' then return {'conflict', 'held by ' .. h[2]} end
  return {'conflict', 'not claimed by you'}
end
"""

# KEYS: rec, claimed
# ARGV: id, agent, lease_epoch, lease_iso, now_iso
# No event: only the lease moves, nothing a live consumer shows changes.
RENEW_LUA = (
    PRELUDE
    + """
local rec, claimed = KEYS[1], KEYS[2]
local id, agent = ARGV[1], ARGV[2]
"""
    + _HELD_BY_CALLER
    + """
redis.call('HSET', rec, 'lease_expires_at', ARGV[4], 'updated_at', ARGV[5])
redis.call('ZADD', claimed, ARGV[3], id)
return item(rec, id)
"""
)

# KEYS: rec, feed, claimed, events
# ARGV: id, agent, events_maxlen, now_iso
RELEASE_LUA = (
    PRELUDE
    + """
local rec, feed, claimed, events = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id, agent = ARGV[1], ARGV[2]
"""
    + _HELD_BY_CALLER
    + """
redis.call('HSET', rec, 'status', 'open', 'owner', '', 'lease_expires_at', '',
           'updated_at', ARGV[4])
redis.call('ZREM', claimed, id)
redis.call('ZADD', feed, h[4], id)
emit(events, ARGV[3], 'type', 'released', 'id', id, 'urgency', h[3], 'owner', agent,
     'reason', 'released')
return item(rec, id)
"""
)

# KEYS: rec, feed, claimed, events, due
# ARGV: id, agent, code, note, events_maxlen, now_iso, prefix
RESOLVE_LUA = (
    PRELUDE
    + """
local rec, feed, claimed, events, due = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local id, agent = ARGV[1], ARGV[2]
"""
    + _HELD_BY_CALLER
    + """
redis.call('HSET', rec, 'status', 'resolved', 'lease_expires_at', '', 'updated_at', ARGV[6],
           'resolution_code', ARGV[3], 'resolution_note', ARGV[4], 'resolved_at', ARGV[6])
redis.call('ZREM', feed, id)
redis.call('ZREM', claimed, id)
redis.call('ZREM', due, id)
if h[5] and h[5] ~= '' then redis.call('SREM', ARGV[7] .. ':cust:' .. h[5], id) end
emit(events, ARGV[5], 'type', 'resolved', 'id', id, 'urgency', h[3], 'owner', agent,
     'code', ARGV[3])
return item(rec, id)
"""
)

# KEYS: rec, feed, claimed, events
# ARGV: id, to_agent, by, lease_epoch, lease_iso, events_maxlen, now_iso
REASSIGN_LUA = (
    PRELUDE
    + """
local rec, feed, claimed, events = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id = ARGV[1]
if redis.call('EXISTS', rec) == 0 then return {'missing', id} end
local h = redis.call('HMGET', rec, 'status', 'owner', 'urgency', 'score')
if h[1] == 'resolved' then return {'conflict', 'already resolved'} end
local in_feed = redis.call('ZSCORE', feed, id)
if in_feed and not h[4] then redis.call('HSET', rec, 'score', in_feed) end
redis.call('ZREM', feed, id)
redis.call('ZADD', claimed, ARGV[4], id)
redis.call('HSET', rec, 'status', 'claimed', 'owner', ARGV[2], 'lease_expires_at', ARGV[5],
           'updated_at', ARGV[7])
emit(events, ARGV[6], 'type', 'reassigned', 'id', id, 'urgency', h[3], 'owner', ARGV[2],
     'from', h[2] or '', 'by', ARGV[3])
return item(rec, id)
"""
)

# KEYS: rec, feed, events
# ARGV: id, by, reason, events_maxlen, now_iso, level_span
# Raises to urgent keeping the deadline (score mod level span = due seconds); an item
# already escalated is left as it is, with no second event.
ESCALATE_LUA = (
    PRELUDE
    + """
local rec, feed, events = KEYS[1], KEYS[2], KEYS[3]
local id = ARGV[1]
if redis.call('EXISTS', rec) == 0 then return {'missing', id} end
local h = redis.call('HMGET', rec, 'status', 'escalated', 'score')
if h[1] == 'resolved' then return {'conflict', 'already resolved'} end
if h[2] == '1' then return item(rec, id) end
local score = (tonumber(h[3]) or tonumber(redis.call('ZSCORE', feed, id)) or 0) % tonumber(ARGV[6])
local text = string.format('%.17g', score)
redis.call('HSET', rec, 'urgency', 'urgent', 'escalated', '1', 'score', text,
           'updated_at', ARGV[5])
if redis.call('ZSCORE', feed, id) then redis.call('ZADD', feed, text, id) end
emit(events, ARGV[4], 'type', 'escalated', 'id', id, 'urgency', 'urgent', 'by', ARGV[2],
     'reason', ARGV[3])
return item(rec, id)
"""
)

# KEYS: claimed, due, feed, events
# ARGV: now_epoch, limit, events_maxlen, prefix
# Returns {returned ids, breached ids}; at most `limit` of each per call. An item leaves
# `due` when it is marked, so `breached` is emitted once per item however often this runs.
SWEEP_LUA = (
    PRELUDE
    + """
local claimed, due, feed, events = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now, limit, maxlen, prefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local returned, breached = {}, {}
for _, id in ipairs(redis.call('ZRANGE', claimed, '-inf', now, 'BYSCORE', 'LIMIT', 0, limit)) do
  redis.call('ZREM', claimed, id)
  local rec = prefix .. ':rec:' .. id
  local h = redis.call('HMGET', rec, 'status', 'owner', 'urgency', 'score')
  if h[1] == 'claimed' then
    redis.call('HSET', rec, 'status', 'open', 'owner', '', 'lease_expires_at', '')
    if h[4] then redis.call('ZADD', feed, h[4], id) end
    emit(events, maxlen, 'type', 'released', 'id', id, 'urgency', h[3], 'owner', h[2],
         'reason', 'lease_expired')
    returned[#returned + 1] = id
  end
end
for _, id in ipairs(redis.call('ZRANGE', due, '-inf', '(' .. now, 'BYSCORE', 'LIMIT', 0, limit)) do
  redis.call('ZREM', due, id)
  local rec = prefix .. ':rec:' .. id
  local h = redis.call('HMGET', rec, 'status', 'breached', 'urgency', 'due_at')
  if h[1] and h[1] ~= 'resolved' and h[2] ~= '1' then
    redis.call('HSET', rec, 'breached', '1')
    emit(events, maxlen, 'type', 'breached', 'id', id, 'urgency', h[3], 'due_at', h[4])
    breached[#breached + 1] = id
  end
end
return {returned, breached}
"""
)
