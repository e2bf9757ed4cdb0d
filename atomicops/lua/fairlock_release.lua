-- description: Release the fair lock if ARGV[1] holds it, waking the waiters so the first live one takes it; else take ARGV[1] out of the line (a waiter giving up).
-- readonly: no
-- KEYS[1] lock: hash {owner, token} of the fair lock (see fairlock_acquire)
-- KEYS[2] queue: sorted set of waiters, owner -> when it joined the line
-- KEYS[3] alive: sorted set of waiters, owner -> when its heartbeat lapses
-- KEYS[4] wake: the wake-up list all waiters block on; gets one token per waiter in the line (at most 1000), and only the first live one is granted
-- ARGV[1] owner: owner token of the acquisition being released, or of a waiter leaving the line
-- ARGV[2] wake_ttl_ms: how long unclaimed wake-up tokens stay (integer >= 1)
-- returns: 1 released; 0 ARGV[1] does not hold the lock (expired or taken over; a waiter leaving): only its place in the line was given up
-- result: int
-- probe: atomicops-probe 1000
local wake_ttl = tonumber(ARGV[2])
if not wake_ttl or wake_ttl < 1 or wake_ttl ~= math.floor(wake_ttl) then
  return redis.error_reply('INVALID wake_ttl_ms must be an integer >= 1, got ' .. tostring(ARGV[2]))
end
local holder = redis.call('HGET', KEYS[1], 'owner')
local released = 0
if holder == ARGV[1] then
  redis.call('DEL', KEYS[1])
  released = 1
elseif redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
  if holder then
    return 0  -- the holder's release wakes the line
  end
else
  return 0
end
local waiting = math.min(redis.call('ZCARD', KEYS[2]), 1000)
if waiting > 0 then
  local tokens = {}
  for i = 1, waiting do tokens[i] = '1' end
  redis.call('RPUSH', KEYS[4], unpack(tokens))
  redis.call('LTRIM', KEYS[4], -waiting, -1)
  redis.call('PEXPIRE', KEYS[4], wake_ttl)
end
return released
