-- description: Sliding-window rate limit, two-window weighted estimate, on server time: admit ARGV[3] hits on KEYS[1] if the estimate stays within ARGV[1].
-- readonly: no
-- KEYS[1] state: hash {ms: window length, w: index of the current window (server ms // ms), c: hits admitted in it, p: hits admitted in the window before}
-- ARGV[1] limit: hits allowed per window, integer >= 1
-- ARGV[2] window_ms: window length in milliseconds, integer >= 1, with 4 * limit * window_ms < 2^53
-- ARGV[3] amount: hits this call takes, integer >= 1
-- returns: "allowed count reset_ms retry_after_ms now_ms" as one string (one bulk reply parses faster than an array): allowed 1 or 0; count = weighted hits in the window rounded up, these included if allowed; reset_ms until the estimate is back to 0; retry_after_ms 0 if allowed, else until the same call would be admitted; now_ms the server time used
-- result: fields
-- probe: 10 60000 1
local limit, window, amount = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if not limit or limit < 1 or limit ~= math.floor(limit) then
  return redis.error_reply('INVALID limit must be an integer >= 1, got ' .. tostring(ARGV[1]))
end
if not window or window < 1 or window ~= math.floor(window) then
  return redis.error_reply('INVALID window_ms must be an integer >= 1, got ' .. tostring(ARGV[2]))
end
if not amount or amount < 1 or amount ~= math.floor(amount) then
  return redis.error_reply('INVALID amount must be an integer >= 1, got ' .. tostring(ARGV[3]))
end
-- Every product below stays under limit * window * 4: exact in doubles only below 2^53.
if limit * window >= 2251799813685248 then
  return redis.error_reply('INVALID limit * window_ms must stay below 2^51, got ' .. tostring(ARGV[1]) .. ' * ' .. tostring(ARGV[2]))
end

-- The server's clock, never the client's: every client agrees on the window.
-- Each math.floor(a / b) here has integers 0 <= a < 2^53 and b >= 1, so it is exact: a
-- quotient that is not a whole number is at least 1/b away from one, and the division
-- errs by less than that.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local win = math.floor(now / window)
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
-- an integer, so the comparison is exact.
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
  if room >= 0 and prev > 0 and window - math.floor(room * window / prev) < window then
    retry = window - math.floor(room * window / prev) - elapsed
  else
    local later = 0
    if cur > 0 then later = window - math.floor((limit - amount) * window / cur) end
    retry = window - elapsed + later
  end
end
local reset = 0
if cur > 0 then reset = 2 * window - elapsed elseif prev > 0 then reset = window - elapsed end
return string.format('%d %d %d %d %d', allowed and 1 or 0, math.floor((used + window - 1) / window), reset, retry, now)
