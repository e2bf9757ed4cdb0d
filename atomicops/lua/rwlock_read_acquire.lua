-- description: Take a read lease of the read-write lock for ARGV[1]: granted while no writer holds it and no writer waits, issuing the next fencing token of the lock's one fence.
-- readonly: no
-- KEYS[1] lock: hash {owner, token, w} of the writer while one holds it (TTL: its lease), and readers = how many read leases ran at the last reader's grant or release (for the lock listing); exists while anyone holds the lock
-- KEYS[2] readers: sorted set reader owner -> end of its lease (server clock, ms)
-- KEYS[3] tokens: hash reader owner -> its fencing token
-- KEYS[4] writers: sorted set of waiting writers, owner -> when its wish to write lapses (server clock, ms); a live entry keeps new readers out
-- KEYS[5] fence: the last fencing token handed out, to readers and writers alike (see lock_acquire)
-- KEYS[6] asked: how many refused readers may be blocked on the readers' wake-up list (the writer's release wakes that many)
-- ARGV[1] owner: owner token of this acquisition (unique per acquire call)
-- ARGV[2] ttl_ms: the lease, integer milliseconds in [1, 2^52]
-- ARGV[3] wait: 0 NO, 1 BLOCKS, 2 WOKEN (atomicops.lease.Wake): a refused caller that waits is counted in KEYS[6]
-- returns: {1, fencing_token} granted (also when ARGV[1] already holds a read lease: same token, lease reset); {0, ms} refused, a writer holds or waits: try again within ms (the writer's lease or wish ends by then)
-- result: raw
-- probe: atomicops-probe 1000 0
local ttl = tonumber(ARGV[2])
if not ttl or ttl < 1 or ttl > 4503599627370496 or ttl ~= math.floor(ttl) then
  return redis.error_reply('INVALID ttl_ms must be an integer in [1, 2^52], got ' .. tostring(ARGV[2]))
end
local wait = ARGV[3]
if wait ~= '0' and wait ~= '1' and wait ~= '2' then
  return redis.error_reply('INVALID wait must be 0, 1 or 2, got ' .. tostring(wait))
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local token
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
if score and tonumber(score) > now then
  token = tonumber(redis.call('HGET', KEYS[3], ARGV[1]))
else
  local blocked = nil
  if redis.call('HGET', KEYS[1], 'owner') then
    blocked = redis.call('PTTL', KEYS[1])
  else
    local first = redis.call('ZRANGEBYSCORE', KEYS[4], '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
    if #first > 0 then
      blocked = tonumber(first[2]) - now
    end
  end
  if blocked then
    if wait ~= '0' then
      redis.call('INCR', KEYS[6])
      redis.call('PEXPIRE', KEYS[6], math.max(blocked, 1) + 10000)
    end
    return {0, math.max(blocked, 1)}
  end
  token = math.max((tonumber(redis.call('GET', KEYS[5])) or 0) + 1, tonumber(t[1]) * 1000000 + tonumber(t[2]))
  redis.call('SET', KEYS[5], token, 'PX', ttl + 1000)
  redis.call('HSET', KEYS[3], ARGV[1], token)
end
redis.call('ZADD', KEYS[2], now + ttl, ARGV[1])
-- Expired readers are dropped after the writes (a slot being migrated: write before delete).
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
if #expired > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  redis.call('HDEL', KEYS[3], unpack(expired))
end
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
local keep = tonumber(last[2]) - now
redis.call('PEXPIRE', KEYS[2], keep)
redis.call('PEXPIRE', KEYS[3], keep)
redis.call('HSET', KEYS[1], 'readers', redis.call('ZCARD', KEYS[2]))
redis.call('PEXPIRE', KEYS[1], keep)
return {1, token}
