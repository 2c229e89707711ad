-- Sorted-set commands of the in-process store (see commands.lua for the conventions).
-- A sorted set is { score = {member -> number}, order = {member, ...} }, the order
-- sorted by (score, member) as Redis orders it; lookups are binary searches.

local K, A, C = ...
local fail, syntax, integer, arity = A.fail, A.syntax, A.integer, A.arity

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
