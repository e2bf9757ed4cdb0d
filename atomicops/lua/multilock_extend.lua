-- description: Reset the lease of every lock of KEYS to ARGV[2] ms if ARGV[1] still holds them all.
-- readonly: no
-- KEYS[1] lock: the first name's lock hash {owner, token, w} (a Lock's key); KEYS[i] is the i-th name's
-- ARGV[1] owner: owner token of the holder
-- ARGV[2] ttl_ms: the new lease from now, integer milliseconds in [1, 2^52]
-- returns: 1 extended; 0 ARGV[1] does not hold every name any more: nothing changed
-- result: int
-- probe: atomicops-probe 1000
local ttl = tonumber(ARGV[2])
if not ttl or ttl < 1 or ttl > 4503599627370496 or ttl ~= math.floor(ttl) then
  return redis.error_reply('INVALID ttl_ms must be an integer in [1, 2^52], got ' .. tostring(ARGV[2]))
end
for i = 1, #KEYS do
  if redis.call('HGET', KEYS[i], 'owner') ~= ARGV[1] then
    return 0
  end
end
for i = 1, #KEYS do
  redis.call('PEXPIRE', KEYS[i], ttl)
end
return 1
