-- description: Take the lock for ARGV[1] when it is free, issuing the next fencing token.
-- readonly: no
-- KEYS[1] lock: hash {owner, token, w, n}; exists exactly while the lock is held, its TTL is the lease; w is set while a refused caller may be blocked on the wake-up list; n counts a reentrant holder's nested holds
-- KEYS[2] fence: the last fencing token handed out; expires ARGV[2] + 1000 ms after the last grant (the clock floor keeps tokens increasing without it)
-- ARGV[1] owner: owner token of this acquisition (unique per acquire call)
-- ARGV[2] ttl_ms: the lease, integer milliseconds in [1, 2^52]
-- ARGV[3] wait: 0 NO, the caller gives up when refused; 1 BLOCKS, it will block on the wake-up list; 2 WOKEN, it was woken from there and others may still wait (atomicops.lease.Wake)
-- ARGV[4] depth: only for a reentrant lock (absent otherwise): how many nested holds ARGV[1] has after this acquire, integer >= 1, kept in the hash's field n; a free lock is only granted at depth 1 (a deeper one means the outer hold's lease ran out)
-- returns: {1, fencing_token} granted (the token is max(last + 1, server clock in microseconds)) (also when ARGV[1] already holds it: a retry after a lost reply gets the same grant and token, lease reset; a reentrant acquire sets n to ARGV[4], so a retry counts once); {0, pttl_ms} held by another owner (-1 if that key has no TTL); {0, -2} free but ARGV[4] > 1
-- result: raw
-- probe: atomicops-probe 1000 0
local ttl = tonumber(ARGV[2])
-- 2^52: lease ends and tokens stay exact in a Lua number; checked before any write.
if not ttl or ttl < 1 or ttl > 4503599627370496 or ttl ~= math.floor(ttl) then
  return redis.error_reply('INVALID ttl_ms must be an integer in [1, 2^52], got ' .. tostring(ARGV[2]))
end
local NO, BLOCKS, WOKEN = '0', '1', '2'
local wait = ARGV[3]
if wait ~= NO and wait ~= BLOCKS and wait ~= WOKEN then
  return redis.error_reply('INVALID wait must be 0, 1 or 2, got ' .. tostring(wait))
end
local depth = nil
if ARGV[4] then
  depth = tonumber(ARGV[4])
  if not depth or depth < 1 or depth > 9007199254740991 or depth ~= math.floor(depth) then
    return redis.error_reply('INVALID depth must be an integer >= 1, got ' .. tostring(ARGV[4]))
  end
end
local owner = redis.call('HGET', KEYS[1], 'owner')
if owner then
  if owner ~= ARGV[1] then
    -- The caller is about to block: ask this holder's release to wake it.
    if wait ~= NO then redis.call('HSET', KEYS[1], 'w', '1') end
    return {0, redis.call('PTTL', KEYS[1])}
  end
  if depth then redis.call('HSET', KEYS[1], 'n', depth) end
  redis.call('PEXPIRE', KEYS[1], ttl)
  return {1, tonumber(redis.call('HGET', KEYS[1], 'token'))}
end
if depth and depth > 1 then
  return {0, -2}
end
-- Never below the server clock in microseconds: the fence key may expire when idle (no
-- key left behind per name), and a token taken after that, or after a failover lost
-- the last grants, is still larger than every earlier one while the clock goes forward.
local t = redis.call('TIME')
local token = math.max((tonumber(redis.call('GET', KEYS[2])) or 0) + 1, tonumber(t[1]) * 1000000 + tonumber(t[2]))
redis.call('SET', KEYS[2], token, 'PX', ttl + 1000)
if wait == WOKEN then
  -- A woken waiter cannot know whether others still wait: its release wakes the next
  -- one (at worst a token nobody takes, which expires).
  redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'token', token, 'w', '1')
else
  redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'token', token)
end
if depth then redis.call('HSET', KEYS[1], 'n', 1) end
redis.call('PEXPIRE', KEYS[1], ttl)
return {1, token}
