-- The Redis commands the in-process store implements, as `redis.call` sees them.
--
-- Each command takes its arguments as strings (numbers were turned into strings by
-- `redis.call`, as Redis does) and returns what a script would get from Redis:
-- integer -> number, bulk string -> string, nil -> false, array -> table, status ->
-- { ok = 'OK' }. Errors are raised as { err = message }. Only the options listed are
-- supported; anything else raises an error, so a script cannot silently diverge from
-- Redis. Sorted sets are in sorted_sets.lua. To add a command: write it here or there
-- (reading Redis's docs for its exact replies), then
-- add a case to tests/scripting/test_commands.py, which runs every case on real Redis
-- and on this store and compares the replies.

local K, A = ...
local C = {}
local fail, syntax, integer, arity = A.fail, A.syntax, A.integer, A.arity

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

return C
