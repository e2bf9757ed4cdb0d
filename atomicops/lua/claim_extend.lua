-- description: Renew a claim (an idempotency key in flight, a get_or_set computation) while ARGV[1] still owns it.
-- readonly: no
-- KEYS[1] claim: a hash whose 'owner' field names the holder while the claim runs
-- ARGV[1] owner: owner token the claim was granted to
-- ARGV[2] lease_ms: the new time to live, integer in [1, 2^53-1]
-- returns: 1 renewed; 0 ARGV[1] does not own it any more (finished, released, ran out or taken over): nothing changed
-- result: int
-- probe: atomicops-probe 1000
local lease = tonumber(ARGV[2])
if not lease or lease < 1 or lease > 9007199254740991 or lease ~= math.floor(lease) then
  return redis.error_reply('INVALID lease_ms must be an integer in [1, 2^53-1], got ' .. tostring(ARGV[2]))
end
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then
  return 0
end
redis.call('PEXPIRE', KEYS[1], lease)
return 1
