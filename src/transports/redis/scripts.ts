/**
 * Lua scripts: each runs atomically on the server, so a check and the change it guards cannot interleave with
 * another consumer's. Every key a script touches is passed in KEYS and shares the type's hash slot.
 */
import { createHash } from 'node:crypto';

export interface Script {
  readonly source: string;
  readonly sha: string;
}

function script(source: string): Script {
  return { source, sha: createHash('sha1').update(source).digest('hex') };
}

/**
 * Claims up to ARGV[4] entries for consumer ARGV[2] of group ARGV[1]: first the nacked/released ones now due
 * (KEYS[2], scored by due time in server milliseconds), then leases idle for at least ARGV[3] ms that are not waiting out a
 * nack delay. Returns { id, fields, deliveryCount } per claimed entry; the count is the attempt number.
 * Entries deleted from the stream meanwhile (retention, purge) are acked away instead. Ids are claimed a page at a
 * time: one XCLAIM (and one ZREM) per page, not per entry.
 */
export const CLAIM = script(`
local stream, delayed = KEYS[1], KEYS[2]
local group, consumer = ARGV[1], ARGV[2]
local minIdle, count = tonumber(ARGV[3]), tonumber(ARGV[4])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local out = {}
local function claim(ids)
  if #ids == 0 then return end
  local claimed = {}
  for _, entry in ipairs(redis.call('XCLAIM', stream, group, consumer, 0, unpack(ids))) do
    local id = entry[1]
    if entry[2] then
      claimed[id] = true
      local pending = redis.call('XPENDING', stream, group, id, id, 1)
      out[#out + 1] = { id, entry[2], pending[1][4] }
    end
  end
  for _, id in ipairs(ids) do
    if not claimed[id] then redis.call('XACK', stream, group, id) end
  end
end
while #out < count do
  local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, math.min(count - #out, 100))
  if #due == 0 then break end
  redis.call('ZREM', delayed, unpack(due))
  claim(due)
end
local start = '-'
for _ = 1, 10 do
  if #out >= count then break end
  local page = redis.call('XPENDING', stream, group, 'IDLE', minIdle, start, '+', 100)
  if #page == 0 then break end
  local ids = {}
  for _, p in ipairs(page) do
    if #out + #ids >= count then break end
    if not redis.call('ZSCORE', delayed, p[1]) then ids[#ids + 1] = p[1] end
  end
  claim(ids)
  start = '(' .. page[#page][1]
end
return out
`);

/**
 * Returns entries to group ARGV[1], redeliverable ARGV[3] ms from now (server time): ARGV[4], ARGV[6], ... are entry
 * ids, each followed by the delivery count it was handed out with. An entry is released only while consumer ARGV[2]
 * still holds that very lease: a late nack must not disturb a newer delivery. Returns how many were released.
 */
export const RELEASE = script(`
local group, consumer = ARGV[1], ARGV[2]
local time = redis.call('TIME')
local due = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000) + tonumber(ARGV[3])
local released = 0
for i = 4, #ARGV - 1, 2 do
  local id = ARGV[i]
  local p = redis.call('XPENDING', KEYS[1], group, id, id, 1)[1]
  if p and p[2] == consumer and tostring(p[4]) == ARGV[i + 1] then
    redis.call('ZADD', KEYS[2], due, id)
    released = released + 1
  end
end
return released
`);

/** Removes consumer ARGV[2] from group ARGV[1] only when it holds nothing (DELCONSUMER drops what it holds). */
export const FORGET_CONSUMER = script(`
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  if c[2] == ARGV[2] then
    if c[4] == 0 then redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2]) return 1 end
    return 0
  end
end
return 0
`);

/**
 * Removes the group's consumers that hold nothing and have not read for ARGV[2] ms: the names left behind by
 * processes that died without closing (each subscription has a name of its own, so they would pile up).
 */
export const PRUNE_CONSUMERS = script(`
local removed = 0
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  if c[4] == 0 and c[6] > tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], c[2])
    removed = removed + 1
  end
end
return removed
`);

/** Counts the entries after id ARGV[1] (for a group's lag when XINFO cannot tell after deletions). */
export const COUNT_AFTER = script(`
local n, start = 0, '(' .. ARGV[1]
while true do
  local page = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', 1000)
  n = n + #page
  if #page < 1000 then return n end
  start = '(' .. page[#page][1]
end
`);

/**
 * Empties stream KEYS[1] and resets every group on it to the end, dropping their pending entries and
 * delayed redeliveries (keys ARGV[1] .. group name).
 */
export const PURGE = script(`
local groups = {}
if redis.call('EXISTS', KEYS[1]) == 1 then
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do groups[#groups + 1] = g[2] end
end
redis.call('XTRIM', KEYS[1], 'MAXLEN', 0)
for _, name in ipairs(groups) do
  redis.call('XGROUP', 'DESTROY', KEYS[1], name)
  redis.call('XGROUP', 'CREATE', KEYS[1], name, '$')
  redis.call('DEL', ARGV[1] .. name)
end
return #groups
`);

/** Deletes stream KEYS[1], meta hash KEYS[2] and every group's delayed set (keys ARGV[1] .. group name). */
export const DROP = script(`
if redis.call('EXISTS', KEYS[1]) == 1 then
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do redis.call('DEL', ARGV[1] .. g[2]) end
end
return redis.call('DEL', KEYS[1], KEYS[2])
`);
