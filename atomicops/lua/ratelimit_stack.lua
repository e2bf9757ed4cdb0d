-- description: Several rate limits decided together (stacked @rate_limit): every limit is checked first, and the hit is applied to all of them only if every one allows it, so a refused request changes no limit at all. One limit per key; each keeps the state its own script keeps (ratelimit_fixed_window, ratelimit_sliding_window, ratelimit_exact_window, ratelimit_token_bucket).
-- readonly: no
-- KEYS[1] state: the first limit's key (a counter string for a fixed window, a hash for a sliding window or a token bucket, a list for an exact window); KEYS[i] is the i-th limit's
-- ARGV[1] kind: the first limit's algorithm: f (fixed window), s (sliding window), e (exact window), t (token bucket)
-- ARGV[2] limit: its limit (a token bucket's capacity), integer >= 1
-- ARGV[3] period: its window_ms (f, s, e: integer >= 1), or its refill rate in tokens per second (t: number > 0)
-- ARGV[4] amount: what the request takes from it (f, s, e: integer >= 1; t: the cost, an integer <= capacity)
-- Limit i takes ARGV[4i-3] .. ARGV[4i] the same way; there are as many limits as keys.
-- returns: "allowed used reset_ms retry_after_ms" per limit, in KEYS order, as one string (one bulk reply parses faster than an array): allowed 1 or 0 (that limit's own verdict); used = what the limit has used after this request (fixed window: hits in the window; sliding window: the weighted estimate rounded up; exact window: hits in the window; token bucket: capacity minus whole tokens left); reset_ms until it is wholly free again; retry_after_ms 0 if it allowed, else until it would
-- result: fields
-- probe: f 10 60000 1
local n = #KEYS
if #ARGV ~= 4 * n then
  return redis.error_reply('INVALID 4 args per key expected, got ' .. #ARGV .. ' for ' .. n .. ' keys')
end

local function whole(i, least)
  local v = tonumber(ARGV[i])
  if not v or v ~= math.floor(v) or v > 9007199254740991 or (least and v < least) then
    return nil
  end
  return v
end

-- Reads that meet the wrong type say so as the single scripts do.
local function read(cmd, ...)
  local r = redis.pcall(cmd, ...)
  if type(r) == 'table' and r.err then
    local message = tostring(r.err)
    if string.find(message, 'WRONGTYPE', 1, true) then
      return nil, 'WRONGTYPE rate limit key holds another type'
    end
    return nil, message
  end
  return r
end

-- An exact window's run: "ms n cum" (see ratelimit_exact_window).
local function exact_run(raw)
  local ms, n, cum = string.match(raw, '^(%d+) (%d+) (%d+)$')
  if not ms then return nil end
  return {ms = tonumber(ms), n = tonumber(n), cum = tonumber(cum)}
end

-- The server's clock, read once and only when a sliding window or a bucket needs it.
local now_us, now
for i = 1, n do
  local kind = ARGV[4 * i - 3]
  if kind == 's' or kind == 't' or kind == 'e' then
    local t = redis.call('TIME')
    now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
    now = math.floor(now_us / 1000)
    break
  end
end

-- Phase 1: decide every limit, write nothing (but drop an exact window's runs that have
-- left it, which no decision counts).
local plans = {}
local all = true
for i = 1, n do
  local a = 4 * (i - 1)
  local kind = ARGV[a + 1]
  local limit = whole(a + 2, 1)
  local amount = whole(a + 4, nil)
  if not limit or not amount then
    return redis.error_reply('INVALID limit ' .. i .. ': limit and amount must be integers, got ' .. tostring(ARGV[a + 2]) .. ', ' .. tostring(ARGV[a + 4]))
  end
  local p = {kind = kind, limit = limit, amount = amount}
  if kind == 'f' or kind == 's' or kind == 'e' then
    local window = whole(a + 3, 1)
    if not window or amount < 1 or (kind == 's' and limit * window >= 2251799813685248)
        or (kind == 'e' and (amount > limit or now + window > 9007199254740991)) then
      return redis.error_reply('INVALID limit ' .. i .. ': window_ms ' .. tostring(ARGV[a + 3]) .. ' or amount ' .. tostring(ARGV[a + 4]) .. ' out of range')
    end
    p.window = window
  elseif kind == 't' then
    local rate = tonumber(ARGV[a + 3])
    if not rate or rate ~= rate or rate <= 0 or rate == math.huge or limit * 1000 / rate > 9007199254740991 or amount > limit then
      return redis.error_reply('INVALID limit ' .. i .. ': rate ' .. tostring(ARGV[a + 3]) .. ' or cost ' .. tostring(ARGV[a + 4]) .. ' out of range')
    end
    p.rate = rate
  else
    return redis.error_reply('INVALID limit ' .. i .. ': kind must be f, s, e or t, got ' .. tostring(kind))
  end

  if kind == 'f' then
    local raw, err = read('GET', KEYS[i])
    if err then return redis.error_reply(err) end
    local cur = 0
    if raw then
      cur = tonumber(raw)
      if not cur or not string.find(raw, '^%-?%d+$') then
        return redis.error_reply('NOTINT counter does not hold an integer')
      end
      p.ttl = redis.call('PTTL', KEYS[i])
    end
    p.cur = cur
    p.exists = raw ~= false and raw ~= nil
    p.allowed = cur + amount <= limit
  elseif kind == 's' then
    local window = p.window
    local win = math.floor(now / window)
    local elapsed = now - win * window
    local s, err = read('HMGET', KEYS[i], 'ms', 'w', 'c', 'p')
    if err then return redis.error_reply(err) end
    local cur, prev, same = 0, 0, false
    if tonumber(s[1]) == window then
      local w = tonumber(s[2])
      if w == win then
        cur, prev = tonumber(s[3]) or 0, tonumber(s[4]) or 0
        same = true
      elseif w == win - 1 then
        prev = tonumber(s[3]) or 0
      end
    end
    p.win, p.elapsed, p.cur, p.prev, p.same = win, elapsed, cur, prev, same
    p.used = prev * (window - elapsed) + cur * window
    p.allowed = p.used + amount * window <= limit * window
  elseif kind == 'e' then
    -- As ratelimit_exact_window: the runs that left the window count for no decision and
    -- are trimmed in the second phase, after any write (popping the last one here would
    -- delete the key before the LPUSH, which a migrating slot refuses mid-script).
    local window = p.window
    local head, tail
    local len, err = read('LLEN', KEYS[i])
    if err then return redis.error_reply(err) end
    local expired = 0
    while expired < len do
      tail = exact_run(redis.call('LINDEX', KEYS[i], -1 - expired))
      if not tail then return redis.error_reply('WRONGTYPE rate limit key holds another list') end
      if tail.ms > now - window then break end
      expired = expired + 1
      tail = nil
    end
    p.count, p.expired, p.cum = 0, expired, 0
    if len > 0 then
      head = exact_run(redis.call('LINDEX', KEYS[i], 0))
      if not head then return redis.error_reply('WRONGTYPE rate limit key holds another list') end
      p.cum = head.cum -- cum only grows, also past runs that left the window
      if tail then p.count = head.cum - tail.cum + tail.n else head = nil end
    end
    p.head, p.tail = head, tail
    p.allowed = p.count + amount <= limit
  else
    local s, err = read('HMGET', KEYS[i], 'tokens', 'ts')
    if err then return redis.error_reply(err) end
    local tokens, ts = tonumber(s[1]), tonumber(s[2])
    if not tokens or not ts then tokens, ts = limit, now_us end
    if ts > now_us then ts = now_us end
    p.tokens = math.min(limit, tokens + (now_us - ts) * p.rate / 1000000)
    p.allowed = amount <= p.tokens
  end
  all = all and p.allowed
  plans[i] = p
end

-- Phase 2: apply every limit only if all allowed; report each one.
local out = {}
for i = 1, n do
  local p = plans[i]
  local used, reset, retry = 0, 0, 0
  if p.kind == 'f' then
    local cur, ttl = p.cur, p.ttl
    if all then
      redis.call('INCRBY', KEYS[i], p.amount)
      cur = cur + p.amount
      if not p.exists or ttl < 0 then
        -- The window opens on its first hit; a counter without TTL gets one from now.
        redis.call('PEXPIRE', KEYS[i], p.window)
        ttl = p.window
      end
    end
    used = cur
    if ttl and ttl > 0 then reset = ttl end
    if not p.allowed then retry = reset > 0 and reset or p.window end
  elseif p.kind == 's' then
    local window, cur, prev, elapsed = p.window, p.cur, p.prev, p.elapsed
    local u = p.used
    if all then
      cur = cur + p.amount
      u = u + p.amount * window
      if p.same then
        redis.call('HINCRBY', KEYS[i], 'c', p.amount)
      else
        redis.call('HSET', KEYS[i], 'ms', window, 'w', p.win, 'c', cur, 'p', prev)
        redis.call('PEXPIREAT', KEYS[i], (p.win + 2) * window)
      end
    end
    used = math.floor((u + window - 1) / window)
    if not p.allowed then
      -- As ratelimit_sliding_window: the first ms the same hit fits, nothing else admitted.
      local room = p.limit - cur - p.amount
      if room >= 0 and prev > 0 and window - math.floor(room * window / prev) < window then
        retry = window - math.floor(room * window / prev) - elapsed
      else
        local later = 0
        if cur > 0 then later = window - math.floor((p.limit - p.amount) * window / cur) end
        retry = window - elapsed + later
      end
    end
    if cur > 0 then reset = 2 * window - elapsed elseif prev > 0 then reset = window - elapsed end
  elseif p.kind == 'e' then
    local window, head, tail, count = p.window, p.head, p.tail, p.count
    if all then
      count = count + p.amount
      if head and head.ms >= now then
        redis.call('LSET', KEYS[i], 0, string.format('%d %d %d', head.ms, head.n + p.amount, head.cum + p.amount))
      else
        redis.call('LPUSH', KEYS[i], string.format('%d %d %d', now, p.amount, p.cum + p.amount))
        head = {ms = now}
      end
      redis.call('PEXPIREAT', KEYS[i], head.ms + window)
    end
    -- After the write; without one, trimming every run deletes a key no later command uses.
    if p.expired > 0 then redis.call('LTRIM', KEYS[i], 0, -1 - p.expired) end
    used = count
    if count > 0 then reset = head.ms + window - now end
    if not p.allowed then
      -- As ratelimit_exact_window: when the need-th oldest counted hit leaves the window.
      local target = tail.cum - tail.n + count + p.amount - p.limit
      local at = tail
      if tail.cum < target then
        local lo, hi = 0, redis.call('LLEN', KEYS[i]) - 1
        while lo < hi do
          local mid = math.floor((lo + hi + 1) / 2)
          if exact_run(redis.call('LINDEX', KEYS[i], mid)).cum >= target then lo = mid else hi = mid - 1 end
        end
        at = exact_run(redis.call('LINDEX', KEYS[i], lo))
      end
      retry = at.ms + window - now
    end
  else
    local tokens, capacity, rate = p.tokens, p.limit, p.rate
    if all then
      tokens = math.min(capacity, tokens - p.amount)
      if tokens >= capacity then
        redis.call('DEL', KEYS[i])
      else
        redis.call('HSET', KEYS[i], 'tokens', string.format('%.17g', tokens), 'ts', now_us)
        redis.call('PEXPIREAT', KEYS[i], math.ceil((now_us + (capacity - tokens) * 1000000 / rate) / 1000))
      end
    end
    used = capacity - math.floor(tokens)
    reset = math.ceil((capacity - tokens) * 1000 / rate)
    if not p.allowed then retry = math.max(1, math.ceil((p.amount - tokens) * 1000 / rate)) end
  end
  out[i] = string.format('%d %d %d %d', p.allowed and 1 or 0, used, reset, retry)
end
return table.concat(out, ' ')
