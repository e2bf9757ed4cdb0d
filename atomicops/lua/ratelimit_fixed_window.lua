-- description: Fixed-window rate limit (the seed's script, plus the window's remaining time): count ARGV[2] hits on KEYS[1]; the window opens on its first hit and lasts ARGV[1] ms. The caller compares the count with its limit.
-- readonly: no
-- KEYS[1] counter: hits in the open window, an integer string whose TTL is the rest of the window
-- ARGV[1] window_ms: window length in milliseconds, integer in [1, 2^53-1]
-- ARGV[2] amount: hits this call counts, integer >= 1
-- returns: "count ttl_ms" as one string (one bulk reply parses faster than an array): count = hits in this window, these included, rejected ones too; ttl_ms = ms until the window ends
-- result: fields
-- probe: 60000 1
local window, amount = tonumber(ARGV[1]), tonumber(ARGV[2])
-- Checked before INCRBY, digits only: both go to Redis as given, and a window PEXPIRE
-- refuses ('6e4', '60000.0') would fail after the hit was counted.
if not window or window > 9007199254740991 or not string.find(ARGV[1], '^[1-9]%d*$') then
  return redis.error_reply('INVALID window_ms must be an integer in [1, 2^53-1], got ' .. tostring(ARGV[1]))
end
if not amount or amount > 9007199254740991 or not string.find(ARGV[2], '^[1-9]%d*$') then
  return redis.error_reply('INVALID amount must be an integer in [1, 2^53-1], got ' .. tostring(ARGV[2]))
end

-- As in the seed: every hit counts, rejected ones too, so a client that keeps
-- hammering stays rejected until the window ends. (ARGV strings go to Redis as they
-- came: no number-to-string conversion on the hot path.)
local count = redis.pcall('INCRBY', KEYS[1], ARGV[2])
if type(count) == 'table' and count.err then
  -- tostring: fakeredis hands the message over as userdata, Redis as a string.
  local message = tostring(count.err)
  if string.find(message, 'WRONGTYPE', 1, true) then
    return redis.error_reply('WRONGTYPE counter holds a non-string value')
  end
  if string.find(message, 'not an integer', 1, true) then
    return redis.error_reply('NOTINT counter does not hold an integer')
  end
  -- Anything else (OOM, READONLY...) is the server refusing: pass its code through.
  return redis.error_reply(message)
end
if count == amount then
  -- First hit of a window: the window starts now.
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  return string.format('%d %d', count, window)
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  -- A counter without TTL (written by something else) would never reset and lock
  -- its clients out for good: give it a window from now.
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = window
end
return string.format('%d %d', count, ttl)
