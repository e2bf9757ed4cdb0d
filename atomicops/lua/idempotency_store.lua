-- description: Store the response of the request holding the claim on an idempotency key (fenced: only its owner token may) and keep it for the replay window.
-- readonly: no
-- KEYS[1] record: the idempotency record (see idempotency_claim); its 'owner' field exists only while the first request runs
-- ARGV[1] owner: owner token the claim was granted to
-- ARGV[2] ttl_ms: how long the response is replayed, integer in [1, 2^53-1]
-- ARGV[3] meta: status, reason, headers and cookies of the response (JSON text)
-- ARGV[4] body: the response body, the bytes that were sent
-- returns: 1 stored; 0 ARGV[1] does not hold the claim (its lease ran out, or it was released): nothing changed
-- result: int
-- probe: atomicops-probe 1000 {} body
local ttl = tonumber(ARGV[2])
if not ttl or ttl < 1 or ttl > 9007199254740991 or ttl ~= math.floor(ttl) then
  return redis.error_reply('INVALID ttl_ms must be an integer in [1, 2^53-1], got ' .. tostring(ARGV[2]))
end
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'state', 'done', 'meta', ARGV[3], 'body', ARGV[4])
-- Without an owner, a renewal that arrives late finds nothing to extend.
redis.call('HDEL', KEYS[1], 'owner')
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
