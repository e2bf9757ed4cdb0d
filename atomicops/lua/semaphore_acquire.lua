-- description: Take one of ARGV[2] slots for ARGV[1], freeing expired holders' slots first.
-- readonly: no
-- KEYS[1] holders: sorted set owner -> lease end (server clock, ms); its TTL is the longest lease
-- KEYS[2] tokens: hash owner -> fencing token of that holder's grant
-- KEYS[3] fence: the last fencing token handed out; expires ARGV[3] + 1000 ms after the last grant (the clock floor keeps tokens increasing without it)
-- KEYS[4] wake: the wake-up list of blocked waiters; emptied when the last slot is taken
-- ARGV[1] owner: owner token of this acquisition (unique per acquire call)
-- ARGV[2] limit: how many holders at most, integer in [1, 2^53-1]
-- ARGV[3] ttl_ms: the lease, integer milliseconds in [1, 2^52]
-- returns: {1, fencing_token} granted (also when ARGV[1] already holds a slot: same grant, lease reset); {0, ms_until_the_first_lease_ends} full
-- result: raw
-- probe: atomicops-probe 1 1000
local limit = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
if not limit or limit < 1 or limit > 9007199254740991 or limit ~= math.floor(limit) then
  return redis.error_reply('INVALID limit must be an integer in [1, 2^53-1], got ' .. tostring(ARGV[2]))
end
if not ttl or ttl < 1 or ttl > 4503599627370496 or ttl ~= math.floor(ttl) then
  return redis.error_reply('INVALID ttl_ms must be an integer in [1, 2^52], got ' .. tostring(ARGV[3]))
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- Expired holders are counted out now but removed last: in a slot being migrated a script
-- may touch only keys that exist, and removing them first could delete the sorted set or
-- the hash that the grant then writes.
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
local function drop_expired()
  if #expired == 0 then
    return
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  for i = 1, #expired do
    if expired[i] ~= ARGV[1] then  -- re-granted below: its token stays
      redis.call('HDEL', KEYS[2], expired[i])
    end
  end
end
local token
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) > now then
  token = tonumber(redis.call('HGET', KEYS[2], ARGV[1]))
else
  if redis.call('ZCARD', KEYS[1]) - #expired >= limit then
    local first = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
    drop_expired()
    return {0, math.max(tonumber(first[2]) - now, 1)}
  end
  -- Never below the server clock in microseconds: see lock_acquire.
  token = math.max((tonumber(redis.call('GET', KEYS[3])) or 0) + 1, tonumber(t[1]) * 1000000 + tonumber(t[2]))
  redis.call('SET', KEYS[3], token, 'PX', ttl + 1000)
  redis.call('HSET', KEYS[2], ARGV[1], token)
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
drop_expired()
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
local keep = tonumber(last[2]) - now
redis.call('PEXPIRE', KEYS[1], keep)
redis.call('PEXPIRE', KEYS[2], keep)
if redis.call('ZCARD', KEYS[1]) >= limit then
  redis.call('DEL', KEYS[4])
end
return {1, token}
