-- description: Give back ARGV[1]'s slot if its lease still runs, and wake one blocked waiter.
-- readonly: no
-- KEYS[1] holders: sorted set owner -> lease end (server clock, ms)
-- KEYS[2] tokens: hash owner -> fencing token
-- KEYS[3] wake: the wake-up list; gets one token per release, at most ARGV[3] kept
-- ARGV[1] owner: owner token of the grant being released
-- ARGV[2] wake_ttl_ms: how long unclaimed wake-up tokens stay (integer >= 1)
-- ARGV[3] limit: the semaphore's limit, integer in [1, 2^53-1] (bounds the wake-up list)
-- returns: 1 released; 0 ARGV[1] holds no slot (never did, released, or its lease ran out): nothing changed
-- result: int
-- probe: atomicops-probe 1000 1
local wake_ttl = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
if not wake_ttl or wake_ttl < 1 or wake_ttl ~= math.floor(wake_ttl) then
  return redis.error_reply('INVALID wake_ttl_ms must be an integer >= 1, got ' .. tostring(ARGV[2]))
end
if not limit or limit < 1 or limit > 9007199254740991 or limit ~= math.floor(limit) then
  return redis.error_reply('INVALID limit must be an integer >= 1, got ' .. tostring(ARGV[3]))
end
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if tonumber(score) <= now then
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('RPUSH', KEYS[3], '1')
redis.call('LTRIM', KEYS[3], -limit, -1)
redis.call('PEXPIRE', KEYS[3], wake_ttl)
return 1
