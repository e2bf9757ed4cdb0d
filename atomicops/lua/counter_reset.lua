-- description: Delete the integer counter KEYS[1] (it then reads 0) and return the value it had.
-- readonly: no
-- KEYS[1] counter: an integer string; missing counts as 0
-- returns: the value before the reset, as a string (exact), or 0 when missing
-- result: int
-- probe:
local raw = redis.pcall('GET', KEYS[1])
if type(raw) == 'table' and raw.err then
  return redis.error_reply('WRONGTYPE counter holds a non-string value')
end
if not raw then
  return 0
end
-- Something that is not a counter is left alone rather than silently destroyed.
if #raw > 20 or not (raw == '0' or string.match(raw, '^%-?[1-9]%d*$')) then
  return redis.error_reply('NOTINT counter holds ' .. string.format('%q', string.sub(raw, 1, 40)) .. ', not an integer')
end
redis.call('DEL', KEYS[1])
return raw
