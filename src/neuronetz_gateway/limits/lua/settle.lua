-- Settlement (docs/REFERENCE.md §4.5/§4.6): release the lease, replace the reservation with the
-- real token count, record the real tokens in the tpm window. Idempotent per subject
-- only through the caller (a ticket is settled once).
--
-- ARGV: limits/layouts.py (SettleArgs).

local now = clock(ARGV[1])
local id = ARGV[2]
local real = tonumber(ARGV[3])
local subjects = tonumber(ARGV[4])

for s = 1, subjects do
  local a = 4 + (s - 1) * 5
  local keys = subject_keys(s)
  if ARGV[a + 2] == '1' then redis.call('ZREM', keys.live, id) end
  local budgets = { ARGV[a + 3] == '1', ARGV[a + 4] == '1', ARGV[a + 5] == '1' }
  if budgets[1] or budgets[2] or budgets[3] then release(keys, budgets, id, real) end
  if ARGV[a + 1] == '1' then
    tpm_window(keys.tpm, now)
    if real > 0 then
      redis.call('HINCRBY', keys.tpm, int(math.floor(now / 1000)), int(real))
      redis.call('PEXPIRE', keys.tpm, TPM_TTL_MS)
    end
  end
end
return 1
