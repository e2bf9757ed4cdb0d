-- description: Add ARGV[2] to the integer counter KEYS[1] only while the result stays <= ARGV[1] (a missing counter counts as 0).
-- readonly: no
-- KEYS[1] counter: an integer string; missing counts as 0
-- ARGV[1] limit: the largest value the counter may reach, integer in [0, 2^53-1]
-- ARGV[2] amount: how much to add, integer in [1, 2^53-1]
-- ARGV[3] ttl_ms: TTL in ms given to the counter when this call creates it, integer >= 0 (0 = none)
-- returns: {value (the counter after the call), applied (1 if the amount was added, else 0)}
-- result: raw
-- probe: 10 1 0

-- Lua numbers are doubles: integers are exact only up to 2^53-1, so every number
-- this script compares stays within that range.
local MAX = 9007199254740991

local function is_int(text)
  return text == '0' or string.match(text, '^%-?[1-9]%d*$') ~= nil
end

local function int_arg(i, name, min, range)
  local text = ARGV[i]
  local n = tonumber(text)
  if not n or not is_int(text) or n < min or n > MAX then
    return nil, redis.error_reply(
      'INVALID ' .. name .. ' must be an integer in ' .. range .. ', got ' .. tostring(text))
  end
  return n
end

local limit, err = int_arg(1, 'limit', 0, '[0, 2^53-1]')
if not limit then return err end
local amount
amount, err = int_arg(2, 'amount', 1, '[1, 2^53-1]')
if not amount then return err end
local ttl
ttl, err = int_arg(3, 'ttl_ms', 0, '[0, 2^53-1]')
if not ttl then return err end

local raw = redis.pcall('GET', KEYS[1])
if type(raw) == 'table' and raw.err then
  return redis.error_reply('WRONGTYPE counter holds a non-string value')
end
local current = 0
if raw then
  if #raw > 20 or not is_int(raw) then
    return redis.error_reply('NOTINT counter holds ' .. string.format('%q', string.sub(raw, 1, 40)) .. ', not an integer')
  end
  current = tonumber(raw)
  if current > MAX or current < -MAX then
    return redis.error_reply('OVERFLOW counter holds ' .. raw .. ', beyond 2^53-1 where bounded counters stop being exact')
  end
end

if current + amount > limit then
  return {current, 0}
end
-- The validated text, not the Lua number: redis.call may print large numbers as 1e+15.
redis.call('INCRBY', KEYS[1], ARGV[2])
if not raw and ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return {current + amount, 1}
