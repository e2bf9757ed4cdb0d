-- description: Whether ARGV[1] holds every lock of KEYS, with their fencing tokens and the shortest remaining lease.
-- readonly: yes
-- KEYS[1] lock: the first name's lock hash {owner, token, w} (a Lock's key); KEYS[i] is the i-th name's
-- ARGV[1] owner: owner token to compare with (any string; "" only counts the names held)
-- returns: {owned (1 when ARGV[1] holds every name), token of the first name (0 when free), shortest pttl_ms of the names (-2 when one is free), names held by anyone, token_1, ..., token_n (0 for a free name)}
-- result: raw
-- probe: atomicops-probe
local owned, held, shortest = 1, 0, nil
local tokens = {}
for i = 1, #KEYS do
  local fields = redis.call('HMGET', KEYS[i], 'owner', 'token')
  local pttl = redis.call('PTTL', KEYS[i])
  if fields[1] then
    held = held + 1
  end
  if fields[1] ~= ARGV[1] then
    owned = 0
  end
  if shortest == nil or pttl < shortest then
    shortest = pttl
  end
  tokens[i] = tonumber(fields[2]) or 0
end
local reply = {owned, tokens[1] or 0, shortest or -2, held}
for i = 1, #tokens do
  reply[4 + i] = tokens[i]
end
return reply
