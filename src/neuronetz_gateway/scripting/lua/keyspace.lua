-- The in-process store's keyspace: values by key name, their kind and expiry, with
-- Redis's rules (scripting/lua_host.py runs this once per runtime).
--
--   values[key]   a string (kind 'string'), a table field -> string ('hash') or
--                 { score = {member -> number}, order = {member, ...} } ('zset')
--   kinds[key]    'string' | 'hash' | 'zset'
--   expires[key]  absolute expiry in ms on the host's clock, or nil (persistent)
--
-- The clock is the value the host passes with each call (`set_clock`): one script run
-- sees one instant, as in Redis, where time stands still while a script runs. A key
-- whose expiry is < now is gone (Redis: expired when now > expiry). Like Redis, an
-- emptied hash or sorted set ceases to exist, and writing to a key keeps its TTL.

local K = {}
local values, kinds, expires = {}, {}, {}
local now_ms = 0

K.WRONGTYPE = 'WRONGTYPE Operation against a key holding the wrong kind of value'

function K.set_clock(ms)
  now_ms = ms
end

function K.now()
  return now_ms
end

local function drop(key)
  values[key], kinds[key], expires[key] = nil, nil, nil
end
K.drop = drop

-- The value of `key` if it exists (expired keys are dropped here), and its kind.
local function lookup(key)
  local value = values[key]
  if value == nil then return nil, nil end
  local at = expires[key]
  if at ~= nil and at < now_ms then
    drop(key)
    return nil, nil
  end
  return value, kinds[key]
end
K.lookup = lookup

-- The value of `key` if it holds `kind` (nil if missing); a Redis WRONGTYPE error else.
function K.read(key, kind)
  local value, found = lookup(key)
  if value ~= nil and found ~= kind then error({ err = K.WRONGTYPE }) end
  return value
end

-- The value of `key` of `kind`, created by `make()` (without a TTL) when missing.
function K.write(key, kind, make)
  local value = K.read(key, kind)
  if value == nil then
    value = make()
    values[key], kinds[key], expires[key] = value, kind, nil
  end
  return value
end

-- Stores a string value; `keep_ttl` as SET KEEPTTL, else the key becomes persistent.
function K.store(key, value, keep_ttl)
  local _ = lookup(key)
  values[key], kinds[key] = value, 'string'
  if not keep_ttl then expires[key] = nil end
end

function K.exists(key)
  return (lookup(key)) ~= nil
end

-- Sets the expiry of an existing key to now + ms; false when the key does not exist.
function K.expire_in(key, ms)
  if lookup(key) == nil then return false end
  if ms <= 0 then
    drop(key) -- Redis deletes a key given a TTL in the past
  else
    expires[key] = now_ms + ms
  end
  return true
end

-- PTTL: ms left, -1 without expiry, -2 when missing.
function K.ttl_ms(key)
  if lookup(key) == nil then return -2 end
  local at = expires[key]
  if at == nil then return -1 end
  return at - now_ms
end

-- Drops `key` if its hash or sorted set became empty.
function K.drop_if_empty(key, value, kind)
  if kind == 'hash' then
    if next(value) == nil then drop(key) end
  elseif #value.order == 0 then
    drop(key)
  end
end

-- Every key that exists now (for inspection; the order is unspecified).
function K.keys()
  local found = {}
  for key in pairs(values) do
    if lookup(key) ~= nil then found[#found + 1] = key end
  end
  return found
end

-- Drops every expired key; returns how many were dropped.
function K.purge()
  local expired = {}
  for key, at in pairs(expires) do
    if at < now_ms then expired[#expired + 1] = key end
  end
  for _, key in ipairs(expired) do drop(key) end
  return #expired
end

function K.flush()
  values, kinds, expires = {}, {}, {}
end

return K
