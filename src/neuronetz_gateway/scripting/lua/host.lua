-- The script host inside the in-process Lua runtime (driven by scripting/lua_host.py).
--
-- Scripts are compiled once into `function(KEYS, ARGV)` with Redis's environment:
-- the standard libraries Redis offers, `redis.call`/`redis.pcall` over this store's
-- commands (commands.lua), no new globals. A run is one call from Python, with the
-- clock, the key count, then the keys and the arguments as plain strings; the reply
-- comes back as a flat list of plain values (see `flatten`), so nothing calls back
-- into Python and no Lua table crosses over.

local K, C = ...
local H = {}
local unpack = unpack or table.unpack
local NOT_INTEGER = 'ERR Lua redis lib command arguments must be strings or integers'

-- A redis.call argument as Redis turns it into a string: numbers become their shortest
-- text; integral values are written without a fraction or exponent.
local function argument(value)
  local kind = type(value)
  if kind == 'string' then return value end
  if kind == 'number' then
    if value == math.floor(value) and math.abs(value) < 1e15 then
      return string.format('%d', value)
    end
    return string.format('%.17g', value)
  end
  error({ err = NOT_INTEGER }, 0)
end

-- The arguments of the command being run. One table, reused: commands read it and
-- never keep it, and a command never calls another through redis.call. (A new table
-- per call was a third of the garbage a script run leaves.)
local scratch, scratch_n = {}, 0

local function call(name, ...)
  local command = C[name] or C[string.upper(tostring(name))]
  if command == nil then
    error({ err = 'ERR unknown command \'' .. tostring(name) .. '\'' }, 0)
  end
  local n = select('#', ...)
  local args = scratch
  for i = n + 1, scratch_n do args[i] = nil end
  scratch_n = n
  local a1, a2, a3, a4, a5, a6, a7, a8 = ...
  args[1], args[2], args[3], args[4], args[5], args[6], args[7], args[8] =
    a1, a2, a3, a4, a5, a6, a7, a8
  if n > 8 then
    for i = 9, n do args[i] = (select(i, ...)) end
  end
  for i = 1, n do
    if type(args[i]) ~= 'string' then args[i] = argument(args[i]) end
  end
  return command(args)
end

local redis = {
  call = call,
  LOG_DEBUG = 0, LOG_VERBOSE = 1, LOG_NOTICE = 2, LOG_WARNING = 3,
}

function redis.pcall(...)
  local ok, result = pcall(call, ...)
  if ok then return result end
  if type(result) == 'table' then return result end
  return { err = tostring(result) }
end

function redis.error_reply(message)
  return { err = message }
end

function redis.status_reply(message)
  return { ok = message }
end

function redis.log()
end

-- What a script sees as globals: Redis's set, read-only, and no undefined names. The
-- environment indexes a plain table (fast); only a miss reaches the erroring function.
local globals = setmetatable({
  redis = redis, string = string, table = table, math = math, bit = bit,
  assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs,
  pcall = pcall, rawequal = rawequal, rawget = rawget, rawset = rawset,
  select = select, tonumber = tonumber, tostring = tostring, type = type,
  unpack = unpack, xpcall = xpcall, setmetatable = setmetatable,
  getmetatable = getmetatable,
}, {
  __index = function(_, name)
    error({ err = 'Script attempted to access nonexistent global variable \'' ..
      tostring(name) .. '\'' }, 2)
  end,
})
local environment = setmetatable({}, {
  __index = globals,
  __newindex = function(_, name)
    error({ err = 'Attempt to modify a readonly table: ' .. tostring(name) }, 2)
  end,
})

-- Appends the Redis reply for a script's return value to `out` (from index n + 1) and
-- returns the new length. Lua -> Redis as Redis converts: number -> integer (the
-- fraction dropped), string -> bulk string, true -> 1, false/nil -> nil, { ok = s } ->
-- status s, { err = s } -> an error, other tables -> an array of t[1] up to the first nil.
-- An array is written as `true`, its length, then its elements.
local function flatten(value, out, n)
  local kind = type(value)
  if kind == 'string' then
    out[n + 1] = value
    return n + 1
  elseif kind == 'number' then
    out[n + 1] = value >= 0 and math.floor(value) or math.ceil(value)
    return n + 1
  elseif kind == 'table' then
    if value.err ~= nil then error({ err = tostring(value.err) }, 0) end
    if value.ok ~= nil then
      out[n + 1] = tostring(value.ok)
      return n + 1
    end
    local count = 0
    while value[count + 1] ~= nil do count = count + 1 end
    out[n + 1], out[n + 2] = true, count
    n = n + 2
    for i = 1, count do n = flatten(value[i], out, n) end
    return n
  elseif value == true then
    out[n + 1] = 1
    return n + 1
  end
  out[n + 1] = nil -- false and nil: a nil reply
  return n + 1
end

local function failure(error_value)
  if type(error_value) == 'table' and error_value.err ~= nil then
    return false, tostring(error_value.err)
  end
  return false, tostring(error_value)
end

-- The reply of `run(...)` for Python: true and the flattened reply, or false and the
-- error message.
local function reply(ok, result)
  if not ok then return failure(result) end
  local out = {}
  local flattened, n = pcall(flatten, result, out, 0)
  if not flattened then return failure(n) end
  return true, unpack(out, 1, n)
end

local key_lists = {}

-- Compiles `source` (once) into the run function of one script:
--   run(now_ms, keys_id, arg...) -> true, reply... | false, message
-- where keys_id names a key list given to `keep_keys` before.
function H.compile(name, source)
  local wrapped = 'return function(KEYS, ARGV) ' .. source .. '\nend'
  local chunk, problem
  if setfenv then
    chunk, problem = loadstring(wrapped, '@' .. name)
    if chunk then setfenv(chunk, environment) end
  else
    chunk, problem = load(wrapped, '@' .. name, 't', environment)
  end
  if chunk == nil then error(problem, 0) end
  local script = chunk()
  return function(now_ms, keys_id, ...)
    K.set_clock(now_ms)
    local shared = key_lists[keys_id]
    local keys = {}
    for i = 1, #shared do keys[i] = shared[i] end
    return reply(pcall(script, keys, { ... }))
  end
end

-- Key lists are passed once and then named by a number: a caller such as the limiter
-- passes the same keys for a whole day, and each string crossing from Python costs.
function H.keep_keys(id, ...)
  key_lists[id] = { ... }
end

function H.forget_keys()
  key_lists = {}
end

-- One store command at `now_ms`, as a script's redis.call would run it; its reply as
-- a script would return it to Redis (a nil reply for false).
function H.command(now_ms, ...)
  K.set_clock(now_ms)
  return reply(pcall(call, ...))
end

function H.purge(now_ms)
  K.set_clock(now_ms)
  return K.purge()
end

function H.keys(now_ms)
  K.set_clock(now_ms)
  return unpack(K.keys())
end

H.flush = K.flush

return H
