-- description: Take the fair lock for ARGV[1] when it is free and ARGV[1] is first of the live waiters; a refused caller that waits joins the line (or proves it is alive there).
-- readonly: no
-- KEYS[1] lock: hash {owner, token}, exists exactly while the lock is held, its TTL is the lease
-- KEYS[2] queue: sorted set of waiters, owner -> when it joined the line (server clock, microseconds): the order they are served in
-- KEYS[3] alive: sorted set of waiters, owner -> when its heartbeat lapses (server clock, ms); each attempt of a waiter renews it
-- KEYS[4] fence: the last fencing token handed out (see lock_acquire)
-- ARGV[1] owner: owner token of this acquisition (unique per acquire call)
-- ARGV[2] ttl_ms: the lease, integer milliseconds in [1, 2^52]
-- ARGV[3] wait: 0 NO, the caller gives up when refused (it does not join the line); 1 or 2, it waits (atomicops.lease.Wake)
-- ARGV[4] beat_ms: a waiter attempts again at least this often (integer >= 1): the longest wait this returns
-- ARGV[5] dead_ms: a waiter whose heartbeat is older than this is dropped from the line by whoever looks at it next (integer > ARGV[4])
-- returns: {1, fencing_token} granted (also when ARGV[1] already holds it: same token, lease reset); {0, ms} refused: attempt again within ms (at most ARGV[4])
-- result: raw
-- probe: atomicops-probe 1000 0 1000 3000
local ttl = tonumber(ARGV[2])
if not ttl or ttl < 1 or ttl > 4503599627370496 or ttl ~= math.floor(ttl) then
  return redis.error_reply('INVALID ttl_ms must be an integer in [1, 2^52], got ' .. tostring(ARGV[2]))
end
local wait = ARGV[3]
if wait ~= '0' and wait ~= '1' and wait ~= '2' then
  return redis.error_reply('INVALID wait must be 0, 1 or 2, got ' .. tostring(wait))
end
local beat = tonumber(ARGV[4])
local dead = tonumber(ARGV[5])
if not beat or beat < 1 or beat ~= math.floor(beat) or not dead or dead <= beat or dead ~= math.floor(dead) or dead > 4503599627370496 then
  return redis.error_reply('INVALID beat_ms and dead_ms must be integers with 1 <= beat_ms < dead_ms, got ' .. tostring(ARGV[4]) .. ', ' .. tostring(ARGV[5]))
end
local t = redis.call('TIME')
local micros = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now = math.floor(micros / 1000)
local holder = redis.call('HGET', KEYS[1], 'owner')
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ttl)
  return {1, tonumber(redis.call('HGET', KEYS[1], 'token'))}
end
-- The first live waiter, and the dead ones met before it (removed last: a slot being
-- migrated lets a script write a key it deleted, never the other way round).
local head, head_until = nil, nil
local gone = {}
local line = redis.call('ZRANGE', KEYS[2], 0, -1)
for i = 1, #line do
  local lapses = tonumber(redis.call('ZSCORE', KEYS[3], line[i]))
  if lapses and lapses > now then
    head, head_until = line[i], lapses
    break
  end
  gone[#gone + 1] = line[i]
end
local function drop_dead()
  if #gone > 0 then
    redis.call('ZREM', KEYS[2], unpack(gone))
    redis.call('ZREM', KEYS[3], unpack(gone))
  end
end
if not holder and (head == nil or head == ARGV[1]) then
  local token = math.max((tonumber(redis.call('GET', KEYS[4])) or 0) + 1, micros)
  redis.call('SET', KEYS[4], token, 'PX', ttl + 1000)
  redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'token', token)
  redis.call('PEXPIRE', KEYS[1], ttl)
  drop_dead()
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
  return {1, token}
end
local retry
if holder then
  retry = redis.call('PTTL', KEYS[1])
else
  retry = head_until - now  -- the head takes it, or is dropped by then
end
if wait ~= '0' then
  if not redis.call('ZSCORE', KEYS[2], ARGV[1]) then
    redis.call('ZADD', KEYS[2], micros, ARGV[1])
  end
  redis.call('ZADD', KEYS[3], now + dead, ARGV[1])
  redis.call('PEXPIRE', KEYS[2], dead)
  redis.call('PEXPIRE', KEYS[3], dead)
end
drop_dead()
return {0, math.max(math.min(retry, beat), 1)}
