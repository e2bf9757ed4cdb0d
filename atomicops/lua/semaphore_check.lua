-- description: Whether ARGV[1] holds a slot, with its fencing token, its remaining lease and the holder count.
-- readonly: yes
-- KEYS[1] holders: sorted set owner -> lease end (server clock, ms)
-- KEYS[2] tokens: hash owner -> fencing token
-- ARGV[1] owner: owner token to look up (any string; "" only counts holders)
-- returns: {owned (1|0), fencing_token (0 when not owned), remaining_ms (-2 when not owned), holders (leases still running)}
-- result: raw
-- probe: atomicops-probe
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local holders = redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) <= now then
  return {0, 0, -2, holders}
end
return {1, tonumber(redis.call('HGET', KEYS[2], ARGV[1])) or 0, tonumber(score) - now, holders}
