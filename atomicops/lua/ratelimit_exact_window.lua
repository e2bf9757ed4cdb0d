-- description: Exact sliding-log rate limit on server time: admit ARGV[3] hits on KEYS[1] if, with them, at most ARGV[1] admitted hits lie in the trailing window (now - ARGV[2] ms, now].
-- readonly: no
-- KEYS[1] log: list of the admitted hits still in the window, newest first, run-length encoded: each element "ms n cum" = n hits admitted at server ms, cum = hits admitted on this key up to and including them (so the hits in the window are head.cum - tail.cum + tail.n, read in O(1))
-- ARGV[1] limit: hits allowed in any window, integer >= 1
-- ARGV[2] window_ms: window length in milliseconds, integer >= 1
-- ARGV[3] amount: hits this call takes, integer >= 1 and <= limit
-- ARGV[4] history: how many of the newest runs to return (0: none), integer >= 0
-- ARGV[5] clock: "" (production: the server's TIME); tests only: a fake time in ms, which also makes the expiry relative (see atomicops.testing.throttle_clock)
-- returns: "allowed count reset_ms retry_after_ms now_ms oldest_ms runs [ms n]*runs" as one string: allowed 1 or 0; count = admitted hits in the window, these included if allowed; reset_ms until all of them have left it; retry_after_ms 0 if allowed, else until the oldest hit that must leave has left (exact); now_ms the time used; oldest_ms the oldest counted hit's ms (0: none); then the newest ARGV[4] runs (ms, hits) newest first
-- result: fields
-- probe: 10 60000 1 0
local limit, window, amount = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local runs_wanted = tonumber(ARGV[4])
local function bad(v, least)
  return not v or v ~= math.floor(v) or v < least or v > 9007199254740991
end
if bad(limit, 1) then
  return redis.error_reply('INVALID limit must be an integer >= 1, got ' .. tostring(ARGV[1]))
end
if bad(window, 1) then
  return redis.error_reply('INVALID window_ms must be an integer >= 1, got ' .. tostring(ARGV[2]))
end
if bad(amount, 1) or amount > limit then
  return redis.error_reply('INVALID amount must be an integer in [1, limit], got ' .. tostring(ARGV[3]))
end
if not runs_wanted or runs_wanted ~= math.floor(runs_wanted) or runs_wanted < 0 then
  return redis.error_reply('INVALID history must be an integer >= 0, got ' .. tostring(ARGV[4]))
end

local now
local fake = ARGV[5] ~= nil and ARGV[5] ~= ''
if fake then
  now = tonumber(ARGV[5])
  if bad(now, 0) then
    return redis.error_reply('INVALID clock must be an integer >= 0, got ' .. tostring(ARGV[5]))
  end
else
  -- The server's clock, never the client's: every client agrees on the window.
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- Every sum below (a time plus a window, a count plus an amount) stays below 2^53.
if now + window > 9007199254740991 then
  return redis.error_reply('INVALID window_ms ' .. tostring(ARGV[2]) .. ' ends past 2^53 ms')
end

local function run(raw)
  local ms, n, cum = string.match(raw, '^(%d+) (%d+) (%d+)$')
  if not ms then return nil end
  return tonumber(ms), tonumber(n), tonumber(cum)
end

-- Hits at or before now - window have left the window (DRF drops history <= now - duration).
-- They are counted here and trimmed only after the write below: on a cluster slot that is
-- migrating, popping the last run would delete the key, and the LPUSH that follows would
-- then be refused mid-script as a key no longer on this node. Each run is pushed once and
-- trimmed once, so the scan is O(1) amortized per call.
local expired, len = 0, redis.call('LLEN', KEYS[1])
local tail_ms, tail_n, tail_cum
while expired < len do
  tail_ms, tail_n, tail_cum = run(redis.call('LINDEX', KEYS[1], -1 - expired))
  if not tail_ms then
    return redis.error_reply('WRONGTYPE rate limit key holds another list')
  end
  if tail_ms > now - window then break end
  expired = expired + 1
  tail_ms = nil
end
local function trim_expired()
  if expired > 0 then redis.call('LTRIM', KEYS[1], 0, -1 - expired) end
end

-- head_cum continues from the newest run even when it has left the window: cum only grows.
local head_ms, head_n, head_cum = 0, 0, 0
local count = 0
if len > 0 then
  local newest_ms, newest_n, newest_cum = run(redis.call('LINDEX', KEYS[1], 0))
  if not newest_ms then
    return redis.error_reply('WRONGTYPE rate limit key holds another list')
  end
  head_cum = newest_cum
  if tail_ms then
    head_ms, head_n = newest_ms, newest_n
    count = head_cum - tail_cum + tail_n
  end
end

local allowed = count + amount <= limit
local retry = 0
if allowed then
  count = count + amount
  if tail_ms and head_ms >= now then
    -- A burst in one ms (or a server clock stepped back) extends the newest run: one
    -- element for the lot, and the log stays ordered.
    redis.call('LSET', KEYS[1], 0, string.format('%d %d %d', head_ms, head_n + amount, head_cum + amount))
    head_n = head_n + amount
  else
    redis.call('LPUSH', KEYS[1], string.format('%d %d %d', now, amount, head_cum + amount))
    head_ms, head_n = now, amount
    if not tail_ms then tail_ms = now end
  end
  head_cum = head_cum + amount
  trim_expired()
  -- Once the newest hit has left the window the log means nothing. At an absolute time
  -- on TIME's clock (a PEXPIRE counts from the script's start, which can be before the
  -- TIME read); a fake clock has no absolute time, so there it is relative.
  if fake then
    redis.call('PEXPIRE', KEYS[1], head_ms + window - now)
  else
    redis.call('PEXPIREAT', KEYS[1], head_ms + window)
  end
else
  -- The same call fits once `need` of the counted hits have left: the run holding the
  -- need-th oldest hit decides. Runs are ordered and cum grows towards the head, so a
  -- binary search finds it (most calls need one hit: the tail run).
  trim_expired() -- refused, so a run is still in the window: the key stays
  local need = count + amount - limit
  local target = tail_cum - tail_n + need
  local at_ms = tail_ms
  if tail_cum < target then
    local lo, hi = 0, redis.call('LLEN', KEYS[1]) - 1 -- indices from the head
    while lo < hi do
      local mid = math.floor((lo + hi + 1) / 2)
      local _, _, mid_cum = run(redis.call('LINDEX', KEYS[1], mid))
      if mid_cum >= target then lo = mid else hi = mid - 1 end
    end
    at_ms = run(redis.call('LINDEX', KEYS[1], lo))
  end
  retry = at_ms + window - now
end

local reset = 0
if count > 0 then reset = head_ms + window - now end
local out = {string.format('%d %d %d %d %d %d', allowed and 1 or 0, count, reset, retry, now, tail_ms or 0)}
if runs_wanted > 0 and count > 0 then
  local runs = redis.call('LRANGE', KEYS[1], 0, runs_wanted - 1)
  out[2] = tostring(#runs)
  for _, raw in ipairs(runs) do
    local ms, n = run(raw)
    out[#out + 1] = string.format('%d %d', ms, n)
  end
else
  out[2] = '0'
end
return table.concat(out, ' ')
