-- description: Decide who computes a missing cache value: claim it when nobody does, else count the caller as a waiter and name the computation it should wait for.
-- readonly: no
-- KEYS[1] claim: hash {owner, w} while a caller computes (its TTL is the lease; w counts the waiters to wake), or {done} for a moment after a value was stored
-- ARGV[1] owner: owner token of this attempt (unique per attempt)
-- ARGV[2] lease_ms: how long the claim lasts unless renewed, integer in [1, 2^53-1]
-- ARGV[3] force: 1 claims even just after a value was stored (the caller read the cache since, and missed); 0 otherwise
-- returns: {1} claimed: compute; {0, owner, pttl_ms} owner is computing: block on its wake-up list <KEYS[1]>:wake:<owner> for at most pttl_ms; {2} a value was stored moments ago: read the cache
-- result: raw
-- probe: atomicops-probe 1000 0
local lease = tonumber(ARGV[2])
if not lease or lease < 1 or lease > 9007199254740991 or lease ~= math.floor(lease) then
  return redis.error_reply('INVALID lease_ms must be an integer in [1, 2^53-1], got ' .. tostring(ARGV[2]))
end
if ARGV[3] ~= '0' and ARGV[3] ~= '1' then
  return redis.error_reply('INVALID force must be 0 or 1, got ' .. tostring(ARGV[3]))
end
local found = redis.call('HMGET', KEYS[1], 'owner', 'done')
if found[1] then
  redis.call('HINCRBY', KEYS[1], 'w', 1)
  return {0, found[1], redis.call('PTTL', KEYS[1])}
end
-- A caller that missed the cache just before the value landed would compute it again.
if found[2] and ARGV[3] == '0' then
  return {2}
end
-- Set the owner before dropping the rest (not DEL then HSET): in a slot being migrated a
-- script may touch only keys that exist, so it cannot recreate a key it removed.
redis.call('HSET', KEYS[1], 'owner', ARGV[1])
redis.call('HDEL', KEYS[1], 'done', 'w')
redis.call('PEXPIRE', KEYS[1], lease)
return {1}
