-- description: Release the lock if ARGV[1] holds it, and wake one blocked waiter if any may wait.
-- readonly: no
-- KEYS[1] lock: hash {owner, token, w, n} of the lock (w: a refused caller may be blocked)
-- KEYS[2] wake: the wake-up list; gets one token when w is set (waiters BLPOP it)
-- ARGV[1] owner: owner token of the acquisition being released
-- ARGV[2] wake_ttl_ms: how long an unclaimed wake-up token stays (integer >= 1)
-- ARGV[3] depth: only for a reentrant lock (absent otherwise): the nested holds ARGV[1] keeps after this release, integer >= 0; above 0 the lock stays held with n set to it (a retry counts once)
-- returns: 1 released (or, with ARGV[3] > 0, its count lowered); 0 ARGV[1] does not hold the lock (expired or taken over): nothing changed
-- result: int
-- probe: atomicops-probe 1000
local wake_ttl = tonumber(ARGV[2])
if not wake_ttl or wake_ttl < 1 or wake_ttl ~= math.floor(wake_ttl) then
  return redis.error_reply('INVALID wake_ttl_ms must be an integer >= 1, got ' .. tostring(ARGV[2]))
end
local depth = nil
if ARGV[3] then
  depth = tonumber(ARGV[3])
  if not depth or depth < 0 or depth > 9007199254740991 or depth ~= math.floor(depth) then
    return redis.error_reply('INVALID depth must be an integer >= 0, got ' .. tostring(ARGV[3]))
  end
end
local held = redis.call('HMGET', KEYS[1], 'owner', 'w')
if held[1] ~= ARGV[1] then
  return 0
end
if depth and depth > 0 then
  -- An inner hold ends: the outer one still holds the lock.
  redis.call('HSET', KEYS[1], 'n', depth)
  return 1
end
redis.call('DEL', KEYS[1])
-- Nobody asked to be woken: the uncontended release stays two commands.
if held[2] then
  -- One token, not one per release: only one waiter can take a lock. Push, then trim
  -- (not DEL then push): in a slot being migrated a script may touch only keys that
  -- exist, so a key it removed cannot be written again by the same script.
  redis.call('RPUSH', KEYS[2], '1')
  redis.call('LTRIM', KEYS[2], -1, -1)
  redis.call('PEXPIRE', KEYS[2], wake_ttl)
end
return 1
