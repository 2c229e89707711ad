-- drop: a grant ends, a waiter leaves, or a replica ticks (docs/SCHEDULING.md). Every
-- call then grants every free slot in fair order.
-- ARGV[BASE..]: kind ('grant' | 'waiter' | 'tick'), then
--   grant:  pairs of grant id, server id (grants this replica ended)
--   waiter: waiter id
--   tick:   ids of this replica's waiters, to report on
-- Reply: {status, woken, reports, next expiry}; status 'dropped' (waiter still queued, now gone),
-- 'given_back' (it had been granted: the slot went back) or 'done'; reports: for each
-- id of a tick, 'w' (waiting), a server id (granted there) or '' (gone).
local kind = ARGV[BASE]
local status, reports = 'done', {}
if kind == 'grant' then
  for k = BASE + 1, #ARGV - 1, 2 do
    local i = INDEX[ARGV[k + 1]]
    if i then
      redis.call('ZREM', held(i), ARGV[k])
    end
  end
elseif kind == 'waiter' then
  local id = ARGV[BASE + 1]
  local rec = redis.call('HGET', K_WAITERS, id)
  if rec then
    forget_waiter(id, rec)
    status = 'dropped'
  else
    for i = 1, N do
      if redis.call('ZREM', held(i), id) == 1 then
        status = 'given_back'
      end
    end
  end
else
  heartbeat()
  redis.call('ZREMRANGEBYSCORE', K_REPLICAS, '-inf', NOW)
end
grant_everywhere()
if kind == 'tick' then
  for k = BASE + 1, #ARGV do
    local id = ARGV[k]
    local report = ''
    if redis.call('HEXISTS', K_WAITERS, id) == 1 then
      report = 'w'
    else
      for i = 1, N do
        if redis.call('ZSCORE', held(i), id) then
          report = SERVER[i]
        end
      end
    end
    reports[#reports + 1] = report
  end
end
return {status, woken, reports, next_expiry()}
