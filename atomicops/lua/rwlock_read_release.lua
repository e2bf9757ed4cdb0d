-- description: Give back ARGV[1]'s read lease if it still runs; the last reader out wakes a waiting writer.
-- readonly: no
-- KEYS[1] lock: the read-write lock's hash (see rwlock_read_acquire); its readers field is updated, removed with the last reader
-- KEYS[2] readers: sorted set reader owner -> end of its lease (server clock, ms)
-- KEYS[3] tokens: hash reader owner -> its fencing token
-- KEYS[4] writers: sorted set of waiting writers, owner -> when its wish lapses
-- KEYS[5] wake: the writers' wake-up list; gets one token when the last reader leaves and a writer waits
-- ARGV[1] owner: owner token of the read lease being released
-- ARGV[2] wake_ttl_ms: how long an unclaimed wake-up token stays (integer >= 1)
-- returns: 1 released; 0 ARGV[1] holds no read lease (never did, released, or its lease ran out): nothing changed
-- result: int
-- probe: atomicops-probe 1000
local wake_ttl = tonumber(ARGV[2])
if not wake_ttl or wake_ttl < 1 or wake_ttl ~= math.floor(wake_ttl) then
  return redis.error_reply('INVALID wake_ttl_ms must be an integer >= 1, got ' .. tostring(ARGV[2]))
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not score or tonumber(score) <= now then
  return 0
end
local live = redis.call('ZCOUNT', KEYS[2], '(' .. now, '+inf') - 1
if live > 0 then
  redis.call('HSET', KEYS[1], 'readers', live)
else
  if redis.call('ZCOUNT', KEYS[4], '(' .. now, '+inf') > 0 then
    redis.call('RPUSH', KEYS[5], '1')
    redis.call('LTRIM', KEYS[5], -1, -1)
    redis.call('PEXPIRE', KEYS[5], wake_ttl)
  end
  redis.call('HDEL', KEYS[1], 'readers')
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
