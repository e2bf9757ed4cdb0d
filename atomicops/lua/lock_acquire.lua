-- description: Take the lock for ARGV[1] when it is free, issuing the next fencing token.
-- readonly: no
-- KEYS[1] lock: hash {owner, token, w}; exists exactly while the lock is held, its TTL is the lease; w is set while a refused caller may be blocked on the wake-up list
-- KEYS[2] fence: the fencing counter, INCR-ed once per grant; never expires
-- ARGV[1] owner: owner token of this acquisition (unique per acquire call)
-- ARGV[2] ttl_ms: the lease, integer milliseconds >= 1
-- ARGV[3] wait: 0 the caller gives up when refused; 1 it will block on the wake-up list; 2 it was woken from there (others may still wait)
-- returns: {1, fencing_token} granted (also when ARGV[1] already holds it: a retry after a lost reply gets the same grant and token, lease reset); {0, pttl_ms} held by another owner (-1 if that key has no TTL)
-- result: raw
-- probe: atomicops-probe 1000 0
local ttl = tonumber(ARGV[2])
if not ttl or ttl < 1 or ttl ~= math.floor(ttl) then
  return redis.error_reply('INVALID ttl_ms must be an integer >= 1, got ' .. tostring(ARGV[2]))
end
local wait = ARGV[3]
if wait ~= '0' and wait ~= '1' and wait ~= '2' then
  return redis.error_reply('INVALID wait must be 0, 1 or 2, got ' .. tostring(wait))
end
local owner = redis.call('HGET', KEYS[1], 'owner')
if owner then
  if owner ~= ARGV[1] then
    -- The caller is about to block: ask this holder's release to wake it.
    if wait ~= '0' then redis.call('HSET', KEYS[1], 'w', '1') end
    return {0, redis.call('PTTL', KEYS[1])}
  end
  redis.call('PEXPIRE', KEYS[1], ttl)
  return {1, tonumber(redis.call('HGET', KEYS[1], 'token'))}
end
local token = redis.call('INCR', KEYS[2])
if wait == '2' then
  -- A woken waiter cannot know whether others still wait: its release wakes the next
  -- one (at worst a token nobody takes, which expires).
  redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'token', token, 'w', '1')
else
  redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'token', token)
end
redis.call('PEXPIRE', KEYS[1], ttl)
return {1, token}
