-- Admission (docs/REFERENCE.md §4.5/§4.6): rpm, tpm, concurrency and budget checks for the key and
-- its tenant in one atomic step. Everything is checked first; only when every check
-- passes is anything consumed (rpm slot, lease, budget reservation).
--
-- KEYS, ARGV and the reply are laid out in limits/layouts.py (AdmitArgs, AdmitReply):
-- a reply is {'missing', ...}, {'refused', ...} or {'ok', ...}.

local now = clock(ARGV[1])
local id = ARGV[2]
local lease_ms = tonumber(ARGV[3])
local prompt_estimate = tonumber(ARGV[4])
local output_ceiling = tonumber(ARGV[5])
local counter_ttls = { ARGV[6], ARGV[7], ARGV[8] }
local state_ttl = ARGV[9]
local count = tonumber(ARGV[10])
local ARGS_PER_SUBJECT = 9

local subjects = {}
for s = 1, count do
  local a = 10 + (s - 1) * ARGS_PER_SUBJECT
  local subject = {
    keys = subject_keys(s),
    rpm = opt(ARGV[a + 1]), tpm = opt(ARGV[a + 2]), concurrent = opt(ARGV[a + 3]),
    budgets = { opt(ARGV[a + 4]), opt(ARGV[a + 5]), opt(ARGV[a + 6]) },
    init = { ARGV[a + 7], ARGV[a + 8], ARGV[a + 9] },
  }
  subject.has_budget = subject.budgets[1] ~= nil or subject.budgets[2] ~= nil
    or subject.budgets[3] ~= nil
  subject.live = subject.concurrent ~= nil or subject.has_budget
  subjects[s] = subject
end

-- 1. Budget counters must exist before they are used: create them from the rebuilt
--    values the caller passed, or ask the caller to rebuild them.
local missing = {}
for s, subject in ipairs(subjects) do
  for p = 1, 3 do
    local counter = subject.keys.counters[p]
    if subject.budgets[p] and redis.call('EXISTS', counter) == 0 then
      if subject.init[p] == '' then
        missing[#missing + 1] = { s, p }
      else
        local init = split(subject.init[p])
        redis.call('HSET', counter, 'used', init[1], 'resv', 0, 'gen', init[2])
        redis.call('PEXPIRE', counter, counter_ttls[p])
      end
    end
  end
end
if #missing > 0 then return { 'missing', missing } end

-- 2. Housekeeping and checks. Reclaiming expired leases (and their reservations) and
--    pruning old window entries frees capacity; it never consumes any.
local failures, headers = {}, {}
local tightest = nil -- the budget counter with the least headroom
local function fail(reason, s, wait, period, detail)
  failures[#failures + 1] = { reason, s, math.max(0, wait), period, detail }
end

for s, subject in ipairs(subjects) do
  local keys = subject.keys
  local h = { -1, -1, -1, -1, -1 }
  if subject.live then
    local expired = redis.call('ZRANGEBYSCORE', keys.live, '-inf', now, 'LIMIT', 0, RECLAIM_BATCH)
    for _, lease in ipairs(expired) do
      redis.call('ZREM', keys.live, lease)
      if subject.has_budget then release(keys, subject.budgets, lease, 0) end
    end
  end
  if subject.concurrent then
    if redis.call('ZCARD', keys.live) >= subject.concurrent then
      local first = redis.call('ZRANGE', keys.live, 0, 0, 'WITHSCORES')
      local wait = lease_ms -- a limit of 0 has no lease to wait for
      if first[2] then wait = tonumber(first[2]) - now end
      fail('concurrency', s, wait, 0, '')
    end
  end
  if subject.rpm then
    -- An entry admitted at t counts while now <= t + 60 s: at most rpm admissions fall
    -- into any closed 60 s interval (at millisecond resolution).
    redis.call('ZREMRANGEBYSCORE', keys.rpm, '-inf', '(' .. int(now - WINDOW_MS))
    local admitted = redis.call('ZCARD', keys.rpm)
    local reset = 0
    if admitted > 0 then
      reset = tonumber(redis.call('ZRANGE', keys.rpm, 0, 0, 'WITHSCORES')[2]) + WINDOW_MS + 1 - now
    end
    h[1], h[2], h[3] = subject.rpm, math.max(0, subject.rpm - admitted), math.max(0, reset)
    if admitted >= subject.rpm then fail('rpm', s, reset, 0, '') end
  end
  if subject.tpm then
    local buckets, sum = tpm_window(keys.tpm, now)
    h[4], h[5] = subject.tpm, math.max(0, subject.tpm - sum)
    if sum >= subject.tpm then
      table.sort(buckets, function(x, y) return x[1] < y[1] end)
      local left, wait = sum, WINDOW_MS
      for _, bucket in ipairs(buckets) do
        left = left - bucket[2]
        if left < subject.tpm then
          wait = (bucket[1] + 61) * 1000 - now
          break
        end
      end
      fail('tpm', s, wait, 0, '')
    end
  end
  for p = 1, 3 do
    local limit = subject.budgets[p]
    if limit then
      local state = redis.call('HMGET', keys.counters[p], 'used', 'resv')
      local used, reserved = tonumber(state[1]) or 0, tonumber(state[2]) or 0
      local headroom = limit - used - reserved
      if tightest == nil or headroom < tightest.headroom then
        tightest = { s = s, p = p, headroom = headroom }
      end
      subject.budgets[p] = { limit = limit, used = used }
    end
  end
  headers[s] = h
end

-- 3. Budgets: the output cap follows from the tightest headroom (docs/REFERENCE.md §4.6).
local output_cap, reserve = -1, 0
if tightest then
  -- The least a request needs: its prompt and one output token, or the prompt alone.
  local need = prompt_estimate + 1
  if output_ceiling < 0 then need = math.max(prompt_estimate, 1) end
  if tightest.headroom < need then
    local exhausted = false
    for s, subject in ipairs(subjects) do
      for p = 1, 3 do
        local budget = subject.budgets[p]
        if budget and budget.limit - budget.used < need then
          fail('budget', s, -1, p, 'exhausted')
          exhausted = true
        end
      end
    end
    -- Only in-flight reservations stand in the way: they settle soon.
    if not exhausted then fail('budget', tightest.s, 1000, tightest.p, 'reserved') end
  elseif output_ceiling < 0 then
    reserve = prompt_estimate
  else
    output_cap = math.min(output_ceiling, tightest.headroom - prompt_estimate)
    reserve = prompt_estimate + output_cap
  end
end

if #failures > 0 then return { 'refused', headers, failures } end

-- 4. Commit: every check passed.
for s, subject in ipairs(subjects) do
  local keys = subject.keys
  if subject.rpm then
    redis.call('ZADD', keys.rpm, int(now), id)
    redis.call('PEXPIRE', keys.rpm, WINDOW_MS + 1000)
    local oldest = tonumber(redis.call('ZRANGE', keys.rpm, 0, 0, 'WITHSCORES')[2])
    headers[s][2] = math.max(0, headers[s][2] - 1)
    headers[s][3] = math.max(0, oldest + WINDOW_MS + 1 - now)
  end
  if subject.live then
    redis.call('ZADD', keys.live, int(now + lease_ms), id)
    redis.call('PEXPIRE', keys.live, state_ttl)
  end
  -- A client that re-sends this script after a timeout (redis-py retries by default)
  -- must not reserve twice: the reservation record makes the commit idempotent.
  if subject.has_budget and redis.call('HEXISTS', keys.resv, id) == 0 then
    local gens = { '', '', '' }
    for p = 1, 3 do
      if subject.budgets[p] then
        local counter = keys.counters[p]
        redis.call('HINCRBY', counter, 'resv', int(reserve))
        redis.call('PEXPIRE', counter, counter_ttls[p])
        gens[p] = redis.call('HGET', counter, 'gen')
      end
    end
    redis.call('HSET', keys.resv, id, int(reserve) .. '|' .. table.concat(gens, '|'))
    redis.call('PEXPIRE', keys.resv, state_ttl)
  end
end
return { 'ok', output_cap, reserve, headers }
