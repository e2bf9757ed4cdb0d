-- description: Reset ARGV[1]'s lease to ARGV[2] ms if its slot is still its own.
-- readonly: no
-- KEYS[1] holders: sorted set owner -> lease end (server clock, ms)
-- KEYS[2] tokens: hash owner -> fencing token
-- ARGV[1] owner: owner token of the holder
-- ARGV[2] ttl_ms: the new lease from now, integer milliseconds in [1, 2^52]
-- returns: 1 extended; 0 ARGV[1] holds no slot (its lease ran out, or released): nothing changed
-- result: int
-- probe: atomicops-probe 1000
local ttl = tonumber(ARGV[2])
if not ttl or ttl < 1 or ttl > 4503599627370496 or ttl ~= math.floor(ttl) then
  return redis.error_reply('INVALID ttl_ms must be an integer in [1, 2^52], got ' .. tostring(ARGV[2]))
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
redis.call('ZADD', KEYS[1], 'XX', now + ttl, ARGV[1])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
local keep = tonumber(last[2]) - now
redis.call('PEXPIRE', KEYS[1], keep)
redis.call('PEXPIRE', KEYS[2], keep)
return 1
