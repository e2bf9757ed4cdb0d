-- description: Fixed-window rate limit: count ARGV[3] hits on KEYS[1]; the window opens on its first hit and lasts ARGV[2] ms.
-- readonly: no
-- KEYS[1] counter: hits in the open window, an integer string whose TTL is the rest of the window
-- ARGV[1] limit: hits allowed per window, integer >= 1
-- ARGV[2] window_ms: window length in milliseconds, integer >= 1
-- ARGV[3] amount: hits this call counts, integer >= 1
-- returns: {allowed (1 or 0), count (hits in this window, these included, rejected ones too), ttl_ms (ms until the window ends)}
-- result: raw
-- probe: 10 60000 1
local function int_arg(i, name)
  local n = tonumber(ARGV[i])
  if not n or n < 1 or n ~= math.floor(n) then
    return nil, redis.error_reply('INVALID ' .. name .. ' must be an integer >= 1, got ' .. tostring(ARGV[i]))
  end
  return n
end
local limit, err = int_arg(1, 'limit')
if not limit then return err end
local window
window, err = int_arg(2, 'window_ms')
if not window then return err end
local amount
amount, err = int_arg(3, 'amount')
if not amount then return err end

-- As in the seed: every hit counts, rejected ones too, so a client that keeps
-- hammering stays rejected until the window ends.
local count = redis.pcall('INCRBY', KEYS[1], amount)
if type(count) == 'table' and count.err then
  -- tostring: fakeredis hands the message over as userdata, Redis as a string.
  if string.find(tostring(count.err), 'WRONGTYPE', 1, true) then
    return redis.error_reply('WRONGTYPE counter holds a non-string value')
  end
  return redis.error_reply('NOTINT counter does not hold an integer')
end
local ttl
if count == amount then
  -- First hit of a window: the window starts now.
  redis.call('PEXPIRE', KEYS[1], window)
  ttl = window
else
  ttl = redis.call('PTTL', KEYS[1])
  if ttl < 0 then
    -- A counter without TTL (written by something else) would never reset and lock
    -- its clients out for good: give it a window from now.
    redis.call('PEXPIRE', KEYS[1], window)
    ttl = window
  end
end
return {count <= limit and 1 or 0, count, ttl}
