-- refresh: push out the leases of this replica's live grants (never re-adding one that
-- was reclaimed), and its heartbeat. ARGV[BASE..]: pairs of grant id, server id.
-- Reply: the ids whose lease was already gone.
heartbeat()
local lost = {}
for k = BASE, #ARGV, 2 do
  local id, i = ARGV[k], INDEX[ARGV[k + 1]]
  if i and redis.call('ZSCORE', held(i), id) then
    redis.call('ZADD', held(i), NOW + LEASE, id)
  else
    lost[#lost + 1] = id
  end
end
return lost
