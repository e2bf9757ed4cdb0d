-- description: Claim an idempotency key for one request, or say in the same step why not: the first request still runs, its response is stored (returned for the replay), or the key was used with a different request.
-- readonly: no
-- KEYS[1] record: hash {state, fp, owner, meta, body}; state 'run' while the first request runs (its TTL is the lease), 'done' once its response is stored (its TTL is the replay window)
-- ARGV[1] owner: owner token of this attempt (unique per request)
-- ARGV[2] fingerprint: digest of the request (method, path and query, body), compared byte for byte
-- ARGV[3] lease_ms: how long the claim lasts unless renewed, integer in [1, 2^53-1]
-- returns: {'claimed'} this request runs the view; {'running', pttl_ms} the first request is still running; {'mismatch'} the key belongs to a different request; {'done', meta, body} the stored response
-- result: raw
-- probe: atomicops-probe fingerprint 1000
local lease = tonumber(ARGV[3])
if not lease or lease < 1 or lease > 9007199254740991 or lease ~= math.floor(lease) then
  return redis.error_reply('INVALID lease_ms must be an integer in [1, 2^53-1], got ' .. tostring(ARGV[3]))
end
local found = redis.call('HMGET', KEYS[1], 'state', 'fp')
if not found[1] then
  redis.call('HSET', KEYS[1], 'state', 'run', 'fp', ARGV[2], 'owner', ARGV[1])
  redis.call('PEXPIRE', KEYS[1], lease)
  return {'claimed'}
end
-- A different request never learns anything about the first one, whatever its state.
if found[2] ~= ARGV[2] then
  return {'mismatch'}
end
if found[1] == 'run' then
  return {'running', redis.call('PTTL', KEYS[1])}
end
local stored = redis.call('HMGET', KEYS[1], 'meta', 'body')
return {'done', stored[1], stored[2]}
