-- Lease refresh for running streams: push the expiry of `id` in every live set it is
-- still in. A lease that was already reclaimed is not re-added (that could exceed
-- max_concurrent); the count of leases kept alive is returned.
--
-- KEYS: the live sets of the ticket. ARGV and the reply: limits/layouts.py
-- (RefreshArgs, RefreshReply).

local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local alive = 0
for _, key in ipairs(KEYS) do
  if redis.call('ZSCORE', key, ARGV[2]) then
    redis.call('ZADD', key, 'XX', string.format('%d', now + tonumber(ARGV[3])), ARGV[2])
    redis.call('PEXPIRE', key, ARGV[4])
    alive = alive + 1
  end
end
return alive
