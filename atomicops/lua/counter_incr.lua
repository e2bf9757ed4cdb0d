-- description: Add ARGV[1] (may be negative) to the integer counter KEYS[1]; a counter this call creates gets the TTL ARGV[2].
-- readonly: no
-- KEYS[1] counter: an integer string; missing counts as 0
-- ARGV[1] amount: how much to add, integer in [-(2^53-1), 2^53-1]
-- ARGV[2] ttl_ms: TTL in ms given to the counter when this call creates it, integer >= 0 (0 = none)
-- returns: the counter after the call, as a string (exact over the whole signed 64-bit range)
-- result: int
-- probe: 1 0
local MAX = 9007199254740991

local function is_int(text)
  return text == '0' or string.match(text, '^%-?[1-9]%d*$') ~= nil
end

local amount = tonumber(ARGV[1])
if not amount or not is_int(ARGV[1]) or amount > MAX or amount < -MAX then
  return redis.error_reply('INVALID amount must be an integer in [-(2^53-1), 2^53-1], got ' .. tostring(ARGV[1]))
end
local ttl = tonumber(ARGV[2])
if not ttl or not is_int(ARGV[2]) or ttl < 0 or ttl > MAX then
  return redis.error_reply('INVALID ttl_ms must be an integer in [0, 2^53-1], got ' .. tostring(ARGV[2]))
end

local existed = redis.call('EXISTS', KEYS[1]) == 1
-- INCRBY checks the stored value and the 64-bit range itself and changes nothing on error.
local reply = redis.pcall('INCRBY', KEYS[1], ARGV[1])
if type(reply) == 'table' and reply.err then
  -- tostring: fakeredis hands the message over as userdata, Redis as a string.
  local message = tostring(reply.err)
  if string.find(message, 'WRONGTYPE', 1, true) then
    return redis.error_reply('WRONGTYPE counter holds a non-string value')
  end
  if string.find(message, 'overflow', 1, true) then
    return redis.error_reply('OVERFLOW adding ' .. ARGV[1] .. ' would take the counter past the signed 64-bit range')
  end
  if string.find(message, 'not an integer', 1, true) then
    return redis.error_reply('NOTINT counter does not hold an integer in the signed 64-bit range')
  end
  -- Anything else (OOM, READONLY...) is the server refusing: pass its code through.
  return redis.error_reply(message)
end
if not existed and ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
-- INCRBY's reply reached Lua as a double (inexact past 2^53); the stored text is exact.
return redis.call('GET', KEYS[1])
