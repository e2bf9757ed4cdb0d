-- description: Sliding-window rate limit, two-window weighted estimate, on server time: admit ARGV[3] hits on KEYS[1] if the estimate stays within ARGV[1].
-- readonly: no
-- KEYS[1] state: hash {ms: window length, w: index of the current window (server ms // ms), c: hits admitted in it, p: hits admitted in the window before}
-- ARGV[1] limit: hits allowed per window, integer >= 1
-- ARGV[2] window_ms: window length in milliseconds, integer >= 1
-- ARGV[3] amount: hits this call takes, integer >= 1
-- returns: {allowed (1 or 0), count (weighted hits in the window rounded up, these included if allowed), reset_ms (until the estimate is back to 0), retry_after_ms (0 if allowed, else until the same call would be admitted), now_ms (server time used)}
-- result: raw
-- probe: 10 60000 1
local function int_arg(i, name)
  local n = tonumber(ARGV[i])
  if not n or n < 1 or n ~= math.floor(n) then
    return nil, redis.error_reply('INVALID ' .. name .. ' must be an integer >= 1, got ' .. tostring(ARGV[i]))
  end
  return n
end
-- floor(a / b) for non-negative integers below 2^53, exact (a double division can round up).
local function idiv(a, b)
  local q = math.floor(a / b)
  if q * b > a then q = q - 1 elseif (q + 1) * b <= a then q = q + 1 end
  return q
end
local limit, err = int_arg(1, 'limit')
if not limit then return err end
local window
window, err = int_arg(2, 'window_ms')
if not window then return err end
local amount
amount, err = int_arg(3, 'amount')
if not amount then return err end

-- The server's clock, never the client's: every client agrees on the window.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + idiv(tonumber(t[2]), 1000)
local win = idiv(now, window)
local elapsed = now - win * window

local s = redis.call('HMGET', KEYS[1], 'ms', 'w', 'c', 'p')
local cur, prev = 0, 0
local same = false -- the stored state is this window's
-- State written with another window length means nothing for this one: start afresh.
if tonumber(s[1]) == window then
  local w = tonumber(s[2])
  if w == win then
    cur, prev = tonumber(s[3]) or 0, tonumber(s[4]) or 0
    same = true
  elseif w == win - 1 then
    prev = tonumber(s[3]) or 0
  end
end

-- The estimate is prev * (window - elapsed) / window + cur. Multiplied by window it is
-- an integer, so the comparison is exact (the caller keeps limit * window < 2^53).
local used = prev * (window - elapsed) + cur * window
local allowed = used + amount * window <= limit * window
local retry = 0
if allowed then
  cur = cur + amount
  used = used + amount * window
  if same then
    -- The common case: one field changes, and the expiry set below still holds.
    redis.call('HINCRBY', KEYS[1], 'c', amount)
  else
    redis.call('HSET', KEYS[1], 'ms', window, 'w', win, 'c', cur, 'p', prev)
    -- After the next window ends neither counter weighs anything: expire then, at that
    -- time on TIME's clock (a PEXPIRE would count from when the script started, which a
    -- descheduled server can put ms before the TIME read, and drop p too early).
    redis.call('PEXPIREAT', KEYS[1], (win + 2) * window)
  end
else
  -- The first server ms at which the same call fits, if nothing else is admitted.
  local room = limit - cur - amount
  if room >= 0 and prev > 0 and window - idiv(room * window, prev) < window then
    retry = window - idiv(room * window, prev) - elapsed
  else
    local later = 0
    if cur > 0 then later = window - idiv((limit - amount) * window, cur) end
    retry = window - elapsed + later
  end
end
local reset = 0
if cur > 0 then reset = 2 * window - elapsed elseif prev > 0 then reset = window - elapsed end
local count = idiv(used + window - 1, window)
return {allowed and 1 or 0, count, reset, retry, now}
