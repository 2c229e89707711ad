-- acquire: a slot for one request, or a place in the queue (docs/SCHEDULING.md).
-- ARGV[BASE..]: tenant, weight, waiter id, enqueue ('1': wait if no slot is free; '0':
-- only try), m, then m eligible server ids, then r, then r grants this replica ended
-- since its last script (grant id, server id): they are given back first, and their
-- slots go to the queue before this request is served (release rides on the next run).
-- Reply: {1, server, woken, '', quiet} granted on server, quiet 1 when nobody waits for
-- that server; {0, '', woken, next expiry, 0} queued (or, when only trying, not queued).
-- Queuing a request publishes its servers on the busy channel: every replica stops
-- handing its ended grants straight to its next request for them (docs/SCHEDULING.md).
heartbeat()
local tenant, weight, id = ARGV[BASE], tonumber(ARGV[BASE + 1]), ARGV[BASE + 2]
local enqueue = ARGV[BASE + 3] == '1'
local m = tonumber(ARGV[BASE + 4])
local r = tonumber(ARGV[BASE + 5 + m] or '0')
local freed = {}
for k = 1, r do
  local at = BASE + 4 + m + 2 * k
  local i = INDEX[ARGV[at + 1]]
  if i then
    redis.call('ZREM', held(i), ARGV[at])
    freed[i] = true
  end
end
local eligible = {}
for k = 1, m do
  local i = INDEX[ARGV[BASE + 4 + k]]
  if i then
    eligible[#eligible + 1] = i
    freed[i] = nil
    grant_free(i)
  end
end
-- Slots given back on servers this request cannot use still go to their queues.
for i = 1, N do
  if freed[i] then
    grant_free(i)
  end
end
local arrival = redis.call('INCR', K_ARRIVALS)
-- The server with the most free slots; ties in turn (by arrival).
local best, most = nil, 0
local count = #eligible
for k = 0, count - 1 do
  local i = eligible[(arrival + k) % count + 1]
  local free = SLOTS[i] - redis.call('ZCARD', held(i))
  if free > most then
    best, most = i, free
  end
end
if best then
  charge(tenant, weight, best)
  redis.call('ZADD', held(best), NOW + LEASE, id)
  local quiet = 0
  if redis.call('ZCARD', wait(best)) == 0 then
    quiet = 1
  end
  return {1, SERVER[best], woken, '', quiet}
end
if not enqueue then
  return {0, '', woken, '', 0}
end
-- Queued. A tenant that was waiting nowhere starts level with the servers' virtual time.
local waiting = false
for j = 1, N do
  if redis.call('ZSCORE', ready(j), tenant) then
    waiting = true
  end
end
local tag = tag_of(tenant)
if not waiting then
  local least = nil
  for _, i in ipairs(eligible) do
    local vt = vt_of(i)
    if least == nil or vt < least then
      least = vt
    end
  end
  if least ~= nil and least > tag then
    tag = least
    redis.call('HSET', K_TAGS, tenant, int(tag))
  end
end
local stamp = string.format('%016d', arrival)
local names = {}
for _, i in ipairs(eligible) do
  redis.call('ZADD', wait(i), 0, tenant .. ':' .. stamp .. ':' .. id)
  redis.call('ZADD', ready(i), int(tag), tenant)
  names[#names + 1] = SERVER[i]
end
redis.call('HSET', K_WAITERS, id, table.concat({tenant, stamp, int(weight), REPLICA, table.concat(names, ',')}, '|'))
if CHANNEL ~= '' then
  redis.call('PUBLISH', CHANNEL .. 'busy', table.concat(names, ','))
end
return {0, '', woken, next_expiry(), 0}
