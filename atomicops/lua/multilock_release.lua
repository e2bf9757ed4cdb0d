-- description: Release every lock of KEYS that ARGV[1] holds (a MultiLock's names in one cluster slot), waking a blocked waiter of each where one may wait.
-- readonly: no
-- KEYS[1] lock: the first name's lock hash {owner, token, w} (a Lock's key); KEYS[2i-1] is the i-th name's
-- KEYS[2] wake: the first name's wake-up list (a Lock's); KEYS[2i] is the i-th name's
-- ARGV[1] owner: owner token of the acquisition being released
-- ARGV[2] wake_ttl_ms: how long an unclaimed wake-up token stays (integer >= 1)
-- returns: 1 every name was released; 0 some name was not held by ARGV[1] any more (its lease ran out, perhaps taken over): the names ARGV[1] did hold are released, the others untouched
-- result: int
-- probe: atomicops-probe 1000
local n = #KEYS / 2
if n < 1 or n ~= math.floor(n) then
  return redis.error_reply('INVALID KEYS must be lock, wake pairs, got ' .. #KEYS .. ' keys')
end
local wake_ttl = tonumber(ARGV[2])
if not wake_ttl or wake_ttl < 1 or wake_ttl ~= math.floor(wake_ttl) then
  return redis.error_reply('INVALID wake_ttl_ms must be an integer >= 1, got ' .. tostring(ARGV[2]))
end
local all = 1
for i = 1, n do
  local lock, wake = KEYS[2 * i - 1], KEYS[2 * i]
  local held = redis.call('HMGET', lock, 'owner', 'w')
  if held[1] ~= ARGV[1] then
    all = 0
  else
    redis.call('DEL', lock)
    if held[2] then
      -- Push then trim (never DEL then push): see lock_release.
      redis.call('RPUSH', wake, '1')
      redis.call('LTRIM', wake, -1, -1)
      redis.call('PEXPIRE', wake, wake_ttl)
    end
  end
end
return all
