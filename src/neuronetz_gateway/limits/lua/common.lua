-- Shared by admit.lua and settle.lua (prepended by limits/scripts.py).
--
-- Per subject (the key, then the tenant) the caller passes seven keys in KEYS, in the
-- order of limits/keys.py's SubjectKeys (what each holds is documented there). All of
-- them carry the tenant's hash tag; no key name is built here.

local KEYS_PER_SUBJECT = 7
local WINDOW_MS = 60000
local TPM_TTL_MS = 62000
local RECLAIM_BATCH = 100

-- Integers as Redis arguments: tostring() would turn 1e15 into "1e+15".
local function int(x)
  return string.format('%d', x)
end

local function opt(value)
  if value == nil or value == '' then return nil end
  return tonumber(value)
end

local function clock(arg)
  if arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function split(record)
  local parts = {}
  for part in string.gmatch(record .. '|', '([^|]*)|') do parts[#parts + 1] = part end
  return parts
end

local function subject_keys(s)
  local k = (s - 1) * KEYS_PER_SUBJECT
  return {
    rpm = KEYS[k + 1], tpm = KEYS[k + 2], live = KEYS[k + 3], resv = KEYS[k + 4],
    counters = { KEYS[k + 5], KEYS[k + 6], KEYS[k + 7] },
  }
end

-- Drops the reservation `id` of a subject: gives its tokens back to each counter that
-- still is the instance it was reserved on (same gen; a rebuilt counter never held it)
-- and adds `real` settled tokens to every existing counter in `budgets`.
local function release(keys, budgets, id, real)
  local record = redis.call('HGET', keys.resv, id)
  local amount, gens = 0, {}
  if record then
    redis.call('HDEL', keys.resv, id)
    local parts = split(record)
    amount = tonumber(parts[1])
    gens = { parts[2], parts[3], parts[4] }
  end
  for p = 1, 3 do
    if budgets[p] then
      local counter = keys.counters[p]
      local gen = redis.call('HGET', counter, 'gen')
      if gen then
        if amount > 0 and gens[p] == gen then
          if redis.call('HINCRBY', counter, 'resv', int(-amount)) < 0 then
            redis.call('HSET', counter, 'resv', 0)
          end
        end
        if real > 0 then redis.call('HINCRBY', counter, 'used', int(real)) end
      end
    end
  end
end

-- Drops tpm buckets that can no longer count; returns the live ones and their sum.
-- A bucket of second s counts while s >= now_s - 60: tokens count for 60 to 61 s.
local function tpm_window(key, now)
  local oldest = math.floor(now / 1000) - 60
  local fields = redis.call('HGETALL', key)
  local buckets, sum, stale = {}, 0, {}
  for i = 1, #fields, 2 do
    local second, tokens = tonumber(fields[i]), tonumber(fields[i + 1])
    if second < oldest then
      stale[#stale + 1] = fields[i]
    else
      buckets[#buckets + 1] = { second, tokens }
      sum = sum + tokens
    end
  end
  if #stale > 0 then redis.call('HDEL', key, unpack(stale)) end
  return buckets, sum
end
