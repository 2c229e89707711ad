-- The Redis commands the in-process store implements, as `redis.call` sees them.
--
-- Each command takes its arguments as strings (numbers were turned into strings by
-- `redis.call`, as Redis does) and returns what a script would get from Redis:
-- integer -> number, bulk string -> string, nil -> false, array -> table, status ->
-- { ok = 'OK' }. Errors are raised as { err = message }. Only the options listed are
-- supported; anything else raises an error, so a script cannot silently diverge from
-- Redis. To add a command: write it here (reading docs for its exact replies), then
-- add a case to tests/scripting/test_commands.py, which runs every case on real Redis
-- and on this store and compares the replies.

local K = ...
local C = {}

local function fail(message)
  error({ err = message }, 0)
end

local function syntax()
  fail('ERR syntax error')
end

local function integer(text)
  local n = tonumber(text)
  if n == nil or n ~= math.floor(n) or string.find(text, '[^%-%d]') then
    fail('ERR value is not an integer or out of range')
  end
  return n
end

local function score(text)
  local lowered = string.lower(text)
  if lowered == '-inf' then return -math.huge end
  if lowered == '+inf' or lowered == 'inf' then return math.huge end
  local n = tonumber(text)
  if n == nil or n ~= n then fail('ERR value is not a valid float') end
  return n
end

-- A score bound of ZRANGEBYSCORE and friends: '(' makes it exclusive.
local function bound(text)
  if string.sub(text, 1, 1) == '(' then
    local ok, value = pcall(score, string.sub(text, 2))
    if not ok then fail('ERR min or max is not a float') end
    return value, true
  end
  local ok, value = pcall(score, text)
  if not ok then fail('ERR min or max is not a float') end
  return value, false
end

-- A score as Redis writes it in a reply: integral values without a fraction.
local function score_text(n)
  if n == math.huge then return 'inf' end
  if n == -math.huge then return '-inf' end
  if n == math.floor(n) and math.abs(n) < 1e17 then return string.format('%d', n) end
  return string.format('%.17g', n)
end

local function arity(args, n)
  if #args ~= n then fail('ERR wrong number of arguments') end
end

-- keys ---------------------------------------------------------------------------------

function C.TIME()
  local ms = K.now()
  local seconds = math.floor(ms / 1000)
  return { string.format('%d', seconds), string.format('%d', (ms - seconds * 1000) * 1000) }
end

function C.EXISTS(args)
  local n = 0
  for i = 1, #args do
    if K.exists(args[i]) then n = n + 1 end
  end
  return n
end

function C.DEL(args)
  local n = 0
  for i = 1, #args do
    if K.exists(args[i]) then
      K.drop(args[i])
      n = n + 1
    end
  end
  return n
end

function C.PEXPIRE(args)
  arity(args, 2)
  return K.expire_in(args[1], integer(args[2])) and 1 or 0
end

function C.EXPIRE(args)
  arity(args, 2)
  return K.expire_in(args[1], integer(args[2]) * 1000) and 1 or 0
end

function C.PTTL(args)
  arity(args, 1)
  return K.ttl_ms(args[1])
end

function C.TYPE(args)
  arity(args, 1)
  local _, kind = K.lookup(args[1])
  return { ok = kind or 'none' }
end

-- strings ------------------------------------------------------------------------------

function C.GET(args)
  arity(args, 1)
  return K.read(args[1], 'string') or false
end

-- SET key value [NX | XX] [PX ms | EX s]
function C.SET(args)
  local key, value, only, ttl = args[1], args[2], nil, nil
  if value == nil then fail('ERR wrong number of arguments') end
  local i = 3
  while i <= #args do
    local option = string.upper(args[i])
    if option == 'NX' or option == 'XX' then
      only = option
    elseif (option == 'PX' or option == 'EX') and args[i + 1] then
      ttl = integer(args[i + 1]) * (option == 'EX' and 1000 or 1)
      if ttl <= 0 then fail('ERR invalid expire time in \'set\' command') end
      i = i + 1
    else
      syntax()
    end
    i = i + 1
  end
  local exists = K.exists(key)
  if (only == 'NX' and exists) or (only == 'XX' and not exists) then return false end
  K.store(key, value, false)
  if ttl then K.expire_in(key, ttl) end
  return { ok = 'OK' }
end

function C.INCRBY(args)
  arity(args, 2)
  local key = args[1]
  local current = K.read(key, 'string')
  local value = (current and integer(current) or 0) + integer(args[2])
  K.store(key, string.format('%d', value), true)
  return value
end

function C.INCR(args)
  arity(args, 1)
  return C.INCRBY({ args[1], '1' })
end

function C.DECRBY(args)
  arity(args, 2)
  return C.INCRBY({ args[1], string.format('%d', -integer(args[2])) })
end

-- hashes -------------------------------------------------------------------------------

local function new_table()
  return {}
end

function C.HGET(args)
  arity(args, 2)
  local fields = K.read(args[1], 'hash')
  return fields and fields[args[2]] or false
end

function C.HMGET(args)
  local fields = K.read(args[1], 'hash') or {}
  local out = {}
  for i = 2, #args do out[i - 1] = fields[args[i]] or false end
  return out
end

function C.HGETALL(args)
  arity(args, 1)
  local out = {}
  for name, value in pairs(K.read(args[1], 'hash') or {}) do
    out[#out + 1] = name
    out[#out + 1] = value
  end
  return out
end

function C.HEXISTS(args)
  arity(args, 2)
  local fields = K.read(args[1], 'hash')
  return (fields and fields[args[2]]) and 1 or 0
end

function C.HLEN(args)
  arity(args, 1)
  local n = 0
  for _ in pairs(K.read(args[1], 'hash') or {}) do n = n + 1 end
  return n
end

function C.HSET(args)
  if #args < 3 or #args % 2 == 0 then fail('ERR wrong number of arguments') end
  local fields = K.write(args[1], 'hash', new_table)
  local added = 0
  for i = 2, #args, 2 do
    if fields[args[i]] == nil then added = added + 1 end
    fields[args[i]] = args[i + 1]
  end
  return added
end

function C.HDEL(args)
  local fields = K.read(args[1], 'hash')
  if fields == nil then return 0 end
  local removed = 0
  for i = 2, #args do
    if fields[args[i]] ~= nil then
      fields[args[i]] = nil
      removed = removed + 1
    end
  end
  K.drop_if_empty(args[1], fields, 'hash')
  return removed
end

function C.HINCRBY(args)
  arity(args, 3)
  local amount = integer(args[3])
  local fields = K.write(args[1], 'hash', new_table)
  local current = fields[args[2]]
  if current ~= nil then
    local n = tonumber(current)
    if n == nil or n ~= math.floor(n) or string.find(current, '[^%-%d]') then
      fail('ERR hash value is not an integer')
    end
    current = n
  end
  local value = (current or 0) + amount
  fields[args[2]] = string.format('%d', value)
  return value
end

-- sorted sets: members ordered by (score, member), as Redis orders them -----------------

local function new_zset()
  return { score = {}, order = {} }
end

-- Position of the first member not before (s, member) in the order.
local function position(z, s, member)
  local order, scores = z.order, z.score
  local low, high = 1, #order + 1
  while low < high do
    local mid = math.floor((low + high) / 2)
    local m = order[mid]
    local ms = scores[m]
    if ms < s or (ms == s and m < member) then
      low = mid + 1
    else
      high = mid
    end
  end
  return low
end
local function zremove(z, member)
  local s = z.score[member]
  if s == nil then return false end
  table.remove(z.order, position(z, s, member))
  z.score[member] = nil
  return true
end

local function zinsert(z, s, member)
  z.score[member] = s
  -- Members mostly arrive in score order (times): append without a search then.
  local order = z.order
  local last = order[#order]
  if last == nil or z.score[last] < s or (z.score[last] == s and last < member) then
    order[#order + 1] = member
  else
    table.insert(order, position(z, s, member), member)
  end
end

-- The index of the first member with a score above (or, exclusive, at or above) `s`.
local function first_above(z, s, inclusive)
  local order, scores = z.order, z.score
  local low, high = 1, #order + 1
  while low < high do
    local mid = math.floor((low + high) / 2)
    local ms = scores[order[mid]]
    if ms < s or (inclusive and ms == s) then
      low = mid + 1
    else
      high = mid
    end
  end
  return low
end

-- The index range [from, to] of the members within the bounds `min` and `max`.
local function score_range(z, min, max)
  local low, low_excl = bound(min)
  local high, high_excl = bound(max)
  return first_above(z, low, low_excl), first_above(z, high, not high_excl) - 1
end

-- ZADD key [NX | XX] [CH] score member [score member ...]
function C.ZADD(args)
  local key, i, only, changed = args[1], 2, nil, false
  while args[i] do
    local option = string.upper(args[i])
    if option == 'NX' or option == 'XX' then
      only = option
    elseif option == 'CH' then
      changed = true
    else
      break
    end
    i = i + 1
  end
  if #args < i + 1 or (#args - i) % 2 == 0 then syntax() end
  local pairs_ = {}
  for j = i, #args, 2 do pairs_[#pairs_ + 1] = { score(args[j]), args[j + 1] } end
  local z = K.read(key, 'zset')
  if z == nil then
    if only == 'XX' then return 0 end
    z = K.write(key, 'zset', new_zset)
  end
  local added, updated = 0, 0
  for _, pair in ipairs(pairs_) do
    local s, member = pair[1], pair[2]
    local old = z.score[member]
    if old == nil then
      if only ~= 'XX' then
        zinsert(z, s, member)
        added = added + 1
      end
    elseif only ~= 'NX' and old ~= s then
      zremove(z, member)
      zinsert(z, s, member)
      updated = updated + 1
    end
  end
  K.drop_if_empty(key, z, 'zset')
  return changed and added + updated or added
end

function C.ZREM(args)
  local z = K.read(args[1], 'zset')
  if z == nil then return 0 end
  local removed = 0
  for i = 2, #args do
    if zremove(z, args[i]) then removed = removed + 1 end
  end
  K.drop_if_empty(args[1], z, 'zset')
  return removed
end

function C.ZCARD(args)
  arity(args, 1)
  local z = K.read(args[1], 'zset')
  return z and #z.order or 0
end

function C.ZSCORE(args)
  arity(args, 2)
  local z = K.read(args[1], 'zset')
  local s = z and z.score[args[2]]
  return s and score_text(s) or false
end

local function members(z, from, to, with_scores)
  local out = {}
  for i = from, to do
    local member = z.order[i]
    out[#out + 1] = member
    if with_scores then out[#out + 1] = score_text(z.score[member]) end
  end
  return out
end

-- ZRANGE key start stop [WITHSCORES] (by index; negative indices count from the end)
function C.ZRANGE(args)
  local with_scores = false
  if #args == 4 and string.upper(args[4]) == 'WITHSCORES' then
    with_scores = true
  elseif #args ~= 3 then
    syntax()
  end
  local z = K.read(args[1], 'zset')
  if z == nil then return {} end
  local n = #z.order
  local from, to = integer(args[2]), integer(args[3])
  if from < 0 then from = math.max(0, n + from) end
  if to < 0 then to = n + to end
  to = math.min(to, n - 1)
  if from > to then return {} end
  return members(z, from + 1, to + 1, with_scores)
end

-- ZRANGEBYSCORE key min max [WITHSCORES] [LIMIT offset count]
function C.ZRANGEBYSCORE(args)
  local with_scores, offset, count = false, 0, -1
  local i = 4
  while i <= #args do
    local option = string.upper(args[i])
    if option == 'WITHSCORES' then
      with_scores = true
    elseif option == 'LIMIT' and args[i + 2] then
      offset, count = integer(args[i + 1]), integer(args[i + 2])
      i = i + 2
    else
      syntax()
    end
    i = i + 1
  end
  local z = K.read(args[1], 'zset')
  if z == nil then
    bound(args[2])
    bound(args[3])
    return {}
  end
  local from, to = score_range(z, args[2], args[3])
  if offset < 0 then return {} end
  from = from + offset
  if count >= 0 then to = math.min(to, from + count - 1) end
  return members(z, from, to, with_scores)
end

function C.ZREMRANGEBYSCORE(args)
  arity(args, 3)
  local z = K.read(args[1], 'zset')
  if z == nil then
    bound(args[2])
    bound(args[3])
    return 0
  end
  local from, to = score_range(z, args[2], args[3])
  if from > to then return 0 end
  local order, scores = z.order, z.score
  for i = from, to do scores[order[i]] = nil end
  local n, removed = #order, to - from + 1
  for i = to + 1, n do order[i - removed] = order[i] end
  for i = n - removed + 1, n do order[i] = nil end
  K.drop_if_empty(args[1], z, 'zset')
  return removed
end

-- A ZRANGEBYLEX bound: '-', '+', '[member' (inclusive) or '(member' (exclusive).
local function lex_bound(text)
  if text == '-' or text == '+' then return text, false end
  local first = string.sub(text, 1, 1)
  if first == '[' then return string.sub(text, 2), false end
  if first == '(' then return string.sub(text, 2), true end
  fail('ERR min or max not valid string range item')
end

-- The index of the first member after `bound` (at or after, when `inclusive`) in lex
-- order, which is the set's order when every score is equal (as ZRANGEBYLEX requires).
local function first_after_lex(order, bound, inclusive)
  if bound == '-' then return 1 end
  if bound == '+' then return #order + 1 end
  local low, high = 1, #order + 1
  while low < high do
    local mid = math.floor((low + high) / 2)
    local member = order[mid]
    if member < bound or (not inclusive and member == bound) then
      low = mid + 1
    else
      high = mid
    end
  end
  return low
end

-- ZRANGEBYLEX key min max [LIMIT offset count]
function C.ZRANGEBYLEX(args)
  local offset, count = 0, -1
  if #args == 6 and string.upper(args[4]) == 'LIMIT' then
    offset, count = integer(args[5]), integer(args[6])
  elseif #args ~= 3 then
    syntax()
  end
  local min, min_excl = lex_bound(args[2])
  local max, max_excl = lex_bound(args[3])
  local z = K.read(args[1], 'zset')
  if z == nil or offset < 0 then return {} end
  local from = first_after_lex(z.order, min, not min_excl)
  local to
  if max == '-' then
    to = 0
  else
    to = first_after_lex(z.order, max, max_excl) - 1
  end
  from = from + offset
  if count >= 0 then to = math.min(to, from + count - 1) end
  return members(z, from, to, false)
end

return C
