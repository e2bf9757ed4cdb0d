-- description: Take the lock for ARGV[1] when it is free, issuing the next fencing token.
-- readonly: no
-- KEYS[1] lock: hash {owner, token}; exists exactly while the lock is held, its TTL is the lease
-- KEYS[2] fence: the fencing counter, INCR-ed once per grant; never expires
-- KEYS[3] wake: the wake-up list of blocked waiters; emptied by a grant (the lock is not free)
-- ARGV[1] owner: owner token of this acquisition (unique per acquire call)
-- ARGV[2] ttl_ms: the lease, integer milliseconds >= 1
-- returns: {1, fencing_token} granted (also when ARGV[1] already holds it: a retry after a lost reply gets the same grant and token, lease reset); {0, pttl_ms} held by another owner (-1 if that key has no TTL)
-- result: raw
-- probe: atomicops-probe 1000
local ttl = tonumber(ARGV[2])
if not ttl or ttl < 1 or ttl ~= math.floor(ttl) then
  return redis.error_reply('INVALID ttl_ms must be an integer >= 1, got ' .. tostring(ARGV[2]))
end
local owner = redis.call('HGET', KEYS[1], 'owner')
if owner then
  if owner ~= ARGV[1] then
    return {0, redis.call('PTTL', KEYS[1])}
  end
  redis.call('PEXPIRE', KEYS[1], ttl)
  return {1, tonumber(redis.call('HGET', KEYS[1], 'token'))}
end
local token = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'token', token)
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('DEL', KEYS[3])
return {1, token}
