-- description: End ARGV[1]'s computation of a cache value: wake every caller waiting for it and, when the value was stored, tell callers for a moment that it is fresh.
-- readonly: no
-- KEYS[1] claim: the claim hash (see getorset_claim)
-- KEYS[2] wake: <KEYS[1]>:wake:<ARGV[1]>, the list this computation's waiters block on (BLPOP)
-- ARGV[1] owner: owner token the claim was granted to
-- ARGV[2] stored: 1 the value is in the cache; 0 the computation failed (the waiters try again)
-- ARGV[3] fresh_ms: how long later callers are told to read the cache instead of claiming, integer >= 1
-- ARGV[4] wake_ttl_ms: how long wake-up tokens nobody took stay, integer >= 1
-- returns: how many wake-up tokens were pushed (at most 10000); -1 when ARGV[1] did not hold the claim (its lease ran out): nothing changed
-- result: int
-- probe: atomicops-probe 1 1000 1000
local fresh = tonumber(ARGV[3])
local wake_ttl = tonumber(ARGV[4])
if ARGV[2] ~= '0' and ARGV[2] ~= '1' then
  return redis.error_reply('INVALID stored must be 0 or 1, got ' .. tostring(ARGV[2]))
end
if not fresh or fresh < 1 or fresh > 9007199254740991 or fresh ~= math.floor(fresh) then
  return redis.error_reply('INVALID fresh_ms must be an integer in [1, 2^53-1], got ' .. tostring(ARGV[3]))
end
if not wake_ttl or wake_ttl < 1 or wake_ttl > 9007199254740991 or wake_ttl ~= math.floor(wake_ttl) then
  return redis.error_reply('INVALID wake_ttl_ms must be an integer in [1, 2^53-1], got ' .. tostring(ARGV[4]))
end
local found = redis.call('HMGET', KEYS[1], 'owner', 'w')
if found[1] ~= ARGV[1] then
  return -1
end
if ARGV[2] == '1' then
  -- Rewritten in place, not deleted and recreated: in a slot being migrated a script may
  -- touch only keys that exist.
  redis.call('HSET', KEYS[1], 'done', '1')
  redis.call('HDEL', KEYS[1], 'owner', 'w')
  redis.call('PEXPIRE', KEYS[1], fresh)
else
  redis.call('DEL', KEYS[1])
end
-- One token per waiter, so all of them wake at once (a lock wakes one). Bounded: a
-- waiter left without a token wakes at the end of its wait and reads the cache then.
local waiters = math.min(tonumber(found[2]) or 0, 10000)
local left = waiters
while left > 0 do
  local batch = {}
  for i = 1, math.min(left, 1000) do
    batch[i] = '1'
  end
  redis.call('RPUSH', KEYS[2], unpack(batch))
  left = left - #batch
end
if waiters > 0 then
  redis.call('PEXPIRE', KEYS[2], wake_ttl)
end
return waiters
