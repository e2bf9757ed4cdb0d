-- description: The seed's read-modify-write in Lua: GET, add ARGV[1], SET, as one atomic step.
-- readonly: no
-- KEYS[1] counter: a string holding an integer (missing counts as 0)
-- ARGV[1] amount: an integer to add
-- returns: the new value
-- result: int
-- probe: 1
local amount = tonumber(ARGV[1])
if not amount or amount ~= math.floor(amount) then
  return redis.error_reply('INVALID amount must be an integer, got ' .. tostring(ARGV[1]))
end
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if not current then
  return redis.error_reply('NOTINT counter does not hold an integer')
end
local nextval = current + amount
redis.call('SET', KEYS[1], nextval)
return nextval
