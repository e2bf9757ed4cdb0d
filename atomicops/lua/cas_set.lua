-- description: Set KEYS[1] to ARGV[1] only if it holds exactly ARGV[3], or, when ARGV[3] is not given, only if it does not exist.
-- readonly: no
-- KEYS[1] key: a string value
-- ARGV[1] new: the value to write
-- ARGV[2] ttl_ms: TTL in ms for the new value, integer >= 0; 0 keeps the TTL the key has (none for a new key)
-- ARGV[3] expected: the value the key must hold (byte for byte); leave out to require that the key does not exist
-- returns: 1 if the value was replaced, 0 if not (nothing changed)
-- result: bool
-- probe: new 0
local MAX = 9007199254740991
local ttl = tonumber(ARGV[2])
if not ttl or not string.match(ARGV[2], '^%d+$') or ttl > MAX then
  return redis.error_reply('INVALID ttl_ms must be an integer in [0, 2^53-1], got ' .. tostring(ARGV[2]))
end

local current = redis.pcall('GET', KEYS[1])
if type(current) == 'table' and current.err then
  return redis.error_reply('WRONGTYPE key holds a non-string value')
end
if #ARGV >= 3 then
  if current ~= ARGV[3] then
    return 0
  end
elseif current then
  return 0
end

if ttl > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
elseif current then
  redis.call('SET', KEYS[1], ARGV[1], 'KEEPTTL')
else
  redis.call('SET', KEYS[1], ARGV[1])
end
return 1
