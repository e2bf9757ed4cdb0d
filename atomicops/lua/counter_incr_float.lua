-- description: Add the decimal ARGV[1] to the float counter KEYS[1] with INCRBYFLOAT; a counter this call creates gets the TTL ARGV[2].
-- readonly: no
-- KEYS[1] counter: a number string; missing counts as 0
-- ARGV[1] amount: a finite decimal such as 0.1, -2.5 or 1e-05
-- ARGV[2] ttl_ms: TTL in ms given to the counter when this call creates it, integer >= 0 (0 = none)
-- returns: the counter after the call as the server's string, e.g. "10.6" (a Lua number would be truncated to 10)
-- result: decimal
-- probe: 0.5 0
local MAX = 9007199254740991

local text = ARGV[1]
local amount = tonumber(text)
-- Plain decimals only: tonumber also takes hex and spaces, which INCRBYFLOAT rejects.
local plain = string.match(text, '^%-?%d*%.?%d*$') or string.match(text, '^%-?%d*%.?%d*[eE][-+]?%d+$')
if not amount or not plain or amount ~= amount or amount == math.huge or amount == -math.huge then
  return redis.error_reply('INVALID amount must be a finite decimal number, got ' .. tostring(text))
end
local ttl = tonumber(ARGV[2])
if not ttl or not string.match(ARGV[2], '^%d+$') or ttl > MAX then
  return redis.error_reply('INVALID ttl_ms must be an integer in [0, 2^53-1], got ' .. tostring(ARGV[2]))
end

local existed = redis.call('EXISTS', KEYS[1]) == 1
local reply = redis.pcall('INCRBYFLOAT', KEYS[1], text)
if type(reply) == 'table' and reply.err then
  local message = tostring(reply.err)
  if string.find(message, 'WRONGTYPE', 1, true) then
    return redis.error_reply('WRONGTYPE counter holds a non-string value')
  end
  if string.find(message, 'NaN or Infinity', 1, true) then
    return redis.error_reply('OVERFLOW adding ' .. text .. ' would make the counter infinite')
  end
  if string.find(message, 'not a valid float', 1, true) then
    return redis.error_reply('NOTFLOAT counter does not hold a number')
  end
  -- Anything else (OOM, READONLY...) is the server refusing: pass its code through.
  return redis.error_reply(message)
end
if not existed and ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
-- The reply is the server's own text: returned as a string it stays exact.
return reply
