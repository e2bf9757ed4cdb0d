-- description: Whether ARGV[1] holds the lock, with the lock's fencing token and remaining lease.
-- readonly: yes
-- KEYS[1] lock: hash {owner, token, w} of the lock (w: a refused caller waits for a wake-up)
-- ARGV[1] owner: owner token to compare with (any string; "" only asks whether it is held)
-- returns: {owned (1|0), fencing_token (0 when free), pttl_ms (-2 free, -1 no TTL), holders (1|0), owner (the holder's owner token, for Lock.holder(); absent when free)}
-- result: raw
-- probe: atomicops-probe
local fields = redis.call('HMGET', KEYS[1], 'owner', 'token')
local pttl = redis.call('PTTL', KEYS[1])
if not fields[1] then
  return {0, 0, pttl, 0}
end
return {fields[1] == ARGV[1] and 1 or 0, tonumber(fields[2]) or 0, pttl, 1, fields[1]}
