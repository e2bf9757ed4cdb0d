-- description: Take the write lease of the read-write lock for ARGV[1] when no writer holds it and no read lease runs; a refused writer that waits keeps new readers out meanwhile.
-- readonly: no
-- KEYS[1] lock: hash {owner, token, w} of the writer (TTL: its lease; w: a refused writer may be blocked on the writers' wake-up list), and readers (see rwlock_read_acquire)
-- KEYS[2] readers: sorted set reader owner -> end of its lease (server clock, ms)
-- KEYS[3] writers: sorted set of waiting writers, owner -> when its wish lapses (server clock, ms); a refused writer that waits is added with ARGV[2] from now, and removed when granted
-- KEYS[4] fence: the last fencing token handed out, to readers and writers alike: a write token is larger than every token before it
-- ARGV[1] owner: owner token of this acquisition (unique per acquire call)
-- ARGV[2] ttl_ms: the lease, integer milliseconds in [1, 2^52]; also how long a waiting writer's wish lasts between two of its attempts
-- ARGV[3] wait: 0 NO, 1 BLOCKS, 2 WOKEN (atomicops.lease.Wake)
-- returns: {1, fencing_token} granted (also when ARGV[1] already holds it: same token, lease reset); {0, ms} refused: try again within ms (at most half of ARGV[2], so the wish is renewed before it lapses)
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
local owner = redis.call('HGET', KEYS[1], 'owner')
if owner == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ttl)
  return {1, tonumber(redis.call('HGET', KEYS[1], 'token'))}
end
local blocked = nil
if owner then
  blocked = redis.call('PTTL', KEYS[1])
  if wait ~= '0' then redis.call('HSET', KEYS[1], 'w', '1') end
else
  local first = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
  if #first > 0 then
    blocked = tonumber(first[2]) - now
  end
end
if blocked then
  if wait ~= '0' then
    redis.call('ZADD', KEYS[3], now + ttl, ARGV[1])
    local latest = redis.call('ZRANGE', KEYS[3], -1, -1, 'WITHSCORES')
    redis.call('PEXPIRE', KEYS[3], math.max(tonumber(latest[2]) - now, 1))
  end
  return {0, math.max(math.min(blocked, math.floor(ttl / 2)), 1)}
end
local token = math.max((tonumber(redis.call('GET', KEYS[4])) or 0) + 1, tonumber(t[1]) * 1000000 + tonumber(t[2]))
redis.call('SET', KEYS[4], token, 'PX', ttl + 1000)
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'token', token)
-- A woken writer passes the wake-up on by its release, as lock_acquire does.
if wait == '2' then redis.call('HSET', KEYS[1], 'w', '1') end
redis.call('HDEL', KEYS[1], 'readers')
redis.call('PEXPIRE', KEYS[1], ttl)
-- Removals last (write before delete): this writer's wish, lapsed wishes, ended readers.
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
return {1, token}
