-- description: Take the locks of several names (a MultiLock's names that share one cluster slot) for ARGV[1], all or none, issuing each its next fencing token.
-- readonly: no
-- KEYS[1] lock: the first name's lock hash {owner, token, w}, the very key a Lock of that name uses (see lock_acquire); KEYS[2i-1] is the i-th name's
-- KEYS[2] fence: the first name's last fencing token (a Lock's fence key); KEYS[2i] is the i-th name's
-- ARGV[1] owner: owner token of this acquisition (unique per acquire call)
-- ARGV[2] ttl_ms: the lease of every name, integer milliseconds in [1, 2^52]
-- ARGV[3] wait: 0 NO, 1 BLOCKS, 2 WOKEN, as for lock_acquire (atomicops.lease.Wake)
-- returns: {1, token_1, ..., token_n} granted, a token per name in KEYS order, each max(last + 1, server clock in microseconds) of that name's fence (a name ARGV[1] already holds keeps its token: a retry after a lost reply gets the same grant); {0, pttl_ms, i} the i-th name is held by another owner: nothing was taken
-- result: raw
-- probe: atomicops-probe 1000 0
local n = #KEYS / 2
if n < 1 or n ~= math.floor(n) then
  return redis.error_reply('INVALID KEYS must be lock, fence pairs, got ' .. #KEYS .. ' keys')
end
local ttl = tonumber(ARGV[2])
if not ttl or ttl < 1 or ttl > 4503599627370496 or ttl ~= math.floor(ttl) then
  return redis.error_reply('INVALID ttl_ms must be an integer in [1, 2^52], got ' .. tostring(ARGV[2]))
end
local NO, BLOCKS, WOKEN = '0', '1', '2'
local wait = ARGV[3]
if wait ~= NO and wait ~= BLOCKS and wait ~= WOKEN then
  return redis.error_reply('INVALID wait must be 0, 1 or 2, got ' .. tostring(wait))
end
-- Every name is looked at before any is written: a refusal changes nothing but the
-- wake-up flag of the name that refused.
local mine = {}
for i = 1, n do
  local owner = redis.call('HGET', KEYS[2 * i - 1], 'owner')
  if owner and owner ~= ARGV[1] then
    if wait ~= NO then redis.call('HSET', KEYS[2 * i - 1], 'w', '1') end
    return {0, redis.call('PTTL', KEYS[2 * i - 1]), i}
  end
  mine[i] = owner == ARGV[1]
end
local t = redis.call('TIME')
local clock = tonumber(t[1]) * 1000000 + tonumber(t[2])
local reply = {1}
for i = 1, n do
  local lock, fence = KEYS[2 * i - 1], KEYS[2 * i]
  local token
  if mine[i] then
    token = tonumber(redis.call('HGET', lock, 'token'))
  else
    token = math.max((tonumber(redis.call('GET', fence)) or 0) + 1, clock)
    redis.call('SET', fence, token, 'PX', ttl + 1000)
    redis.call('HSET', lock, 'owner', ARGV[1], 'token', token)
  end
  -- A woken waiter passes the wake-up on by its releases, as lock_acquire does.
  if wait == WOKEN then redis.call('HSET', lock, 'w', '1') end
  redis.call('PEXPIRE', lock, ttl)
  reply[i + 1] = token
end
return reply
