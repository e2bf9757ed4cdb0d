-- description: Reset the lease of the lock to ARGV[2] ms if ARGV[1] holds it.
-- readonly: no
-- KEYS[1] lock: hash {owner, token, w} of the lock (w: a refused caller waits for a wake-up)
-- ARGV[1] owner: owner token of the holder
-- ARGV[2] ttl_ms: the new lease from now, integer milliseconds in [1, 2^52]
-- returns: 1 extended; 0 ARGV[1] does not hold the lock (expired or taken over): nothing changed
-- result: int
-- probe: atomicops-probe 1000
local ttl = tonumber(ARGV[2])
if not ttl or ttl < 1 or ttl > 4503599627370496 or ttl ~= math.floor(ttl) then
  return redis.error_reply('INVALID ttl_ms must be an integer in [1, 2^52], got ' .. tostring(ARGV[2]))
end
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then
  return 0
end
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
