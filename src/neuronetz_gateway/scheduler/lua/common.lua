-- Shared by every scheduler script (docs/SCHEDULING.md). Prepended to each script.
--
-- KEYS: 1 tags, 2 vt, 3 waiters, 4 replicas, 5 arrivals, then per server i (1-based,
--       in ARGV order): held:<i>, wait:<i>, ready:<i>. Every key shares the tag {nzq}.
-- ARGV: 1 now (ms), 2 lease (ms), 3 this replica's id, 4 wake channel prefix ('' = no
--       pub/sub: standalone), 5 n servers, 6..5+n server ids, 6+n..5+2n their slots,
--       then the script's own arguments from BASE = 6+2n.
local NOW = tonumber(ARGV[1])
local LEASE = tonumber(ARGV[2])
local REPLICA = ARGV[3]
local CHANNEL = ARGV[4]
local N = tonumber(ARGV[5])
local SERVER, INDEX, SLOTS = {}, {}, {}
for i = 1, N do
  SERVER[i] = ARGV[5 + i]
  INDEX[ARGV[5 + i]] = i
  SLOTS[i] = tonumber(ARGV[5 + N + i])
end
local BASE = 6 + 2 * N
local K_TAGS, K_VT, K_WAITERS, K_REPLICAS, K_ARRIVALS = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]

local function held(i) return KEYS[3 + 3 * i] end
local function wait(i) return KEYS[4 + 3 * i] end
local function ready(i) return KEYS[5 + 3 * i] end

-- Grants made by this call to this replica's own waiters: id, server, id, server, ...
local woken = {}

local function split(text, sep)
  local parts = {}
  for part in string.gmatch(text, '([^' .. sep .. ']+)') do
    parts[#parts + 1] = part
  end
  return parts
end

local function int(value)
  return string.format('%d', value)
end

local function tag_of(tenant)
  return tonumber(redis.call('HGET', K_TAGS, tenant) or '0')
end

local function vt_of(i)
  return tonumber(redis.call('HGET', K_VT, SERVER[i]) or '0')
end

local function heartbeat()
  redis.call('ZADD', K_REPLICAS, NOW + LEASE, REPLICA)
end

local function alive(replica)
  local expiry = redis.call('ZSCORE', K_REPLICAS, replica)
  return expiry and tonumber(expiry) > NOW
end

-- The tenant leaves ready:<i> once it has no entry left in wait:<i>.
local function settle_ready(i, tenant)
  local left = redis.call('ZRANGEBYLEX', wait(i), '[' .. tenant .. ':', '(' .. tenant .. ';', 'LIMIT', 0, 1)
  if #left == 0 then
    redis.call('ZREM', ready(i), tenant)
  end
end

-- Take waiter `id` (record `rec`) out of the queue of every server it waits for.
local function forget_waiter(id, rec)
  local f = split(rec, '|')
  local member = f[1] .. ':' .. f[2] .. ':' .. id
  for _, server in ipairs(split(f[5], ',')) do
    local i = INDEX[server]
    if i then
      redis.call('ZREM', wait(i), member)
      settle_ready(i, f[1])
    end
  end
  redis.call('HDEL', K_WAITERS, id)
  return f
end

-- A grant on server i costs the tenant 1/weight of virtual time (units of 1e-6):
-- start = max(tag, V(i)); tag = start + cost; V(i) = start (never backwards).
local function charge(tenant, weight, i)
  local vt = vt_of(i)
  local start = math.max(tag_of(tenant), vt)
  local tag = start + math.floor(1000000 / weight)
  redis.call('HSET', K_TAGS, tenant, int(tag))
  for j = 1, N do
    if redis.call('ZSCORE', ready(j), tenant) then
      redis.call('ZADD', ready(j), int(tag), tenant)
    end
  end
  if start > vt then
    redis.call('HSET', K_VT, SERVER[i], int(start))
  end
end

-- Requests in flight to server i, after dropping the leases that expired.
local function live(i)
  redis.call('ZREMRANGEBYSCORE', held(i), '-inf', NOW)
  return redis.call('ZCARD', held(i))
end

local function wake(id, replica, server)
  if replica == REPLICA then
    woken[#woken + 1] = id
    woken[#woken + 1] = server
  elseif CHANNEL ~= '' then
    redis.call('PUBLISH', CHANNEL .. replica, id .. ' ' .. server)
  end
end

-- Every free slot of server i goes to the next waiting request in fair order: the
-- tenant with the smallest tag, its oldest request. Waiters of dead replicas are dropped.
local function grant_free(i)
  local count = live(i)
  while count < SLOTS[i] do
    local top = redis.call('ZRANGE', ready(i), 0, 0)
    if #top == 0 then
      return
    end
    local tenant = top[1]
    local first = redis.call('ZRANGEBYLEX', wait(i), '[' .. tenant .. ':', '(' .. tenant .. ';', 'LIMIT', 0, 1)
    if #first == 0 then
      redis.call('ZREM', ready(i), tenant)
    else
      local member = first[1]
      local id = string.match(member, ':([^:]+)$')
      local rec = redis.call('HGET', K_WAITERS, id)
      if not rec then
        redis.call('ZREM', wait(i), member)
        settle_ready(i, tenant)
      else
        local f = forget_waiter(id, rec)
        if alive(f[4]) then
          charge(f[1], tonumber(f[3]), i)
          redis.call('ZADD', held(i), NOW + LEASE, id)
          count = count + 1
          wake(id, f[4], SERVER[i])
        end
      end
    end
  end
end

local function grant_everywhere()
  for i = 1, N do
    grant_free(i)
  end
end

-- The earliest lease expiry (ms) on any server ('' when nothing is held): a replica
-- with waiters ticks then, so a dead replica's slots are reclaimed as soon as they expire.
local function next_expiry()
  local soonest = nil
  for i = 1, N do
    local first = redis.call('ZRANGE', held(i), 0, 0, 'WITHSCORES')
    if #first == 2 and (soonest == nil or tonumber(first[2]) < soonest) then
      soonest = tonumber(first[2])
    end
  end
  if soonest == nil then
    return ''
  end
  return int(soonest)
end
