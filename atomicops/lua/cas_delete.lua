-- description: Delete KEYS[1] only if it holds exactly ARGV[1].
-- readonly: no
-- KEYS[1] key: a string value
-- ARGV[1] expected: the value the key must hold (byte for byte)
-- returns: 1 if the key was deleted, 0 if not (nothing changed)
-- result: bool
-- probe: expected
local current = redis.pcall('GET', KEYS[1])
if type(current) == 'table' and current.err then
  return redis.error_reply('WRONGTYPE key holds a non-string value')
end
if current ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
return 1
