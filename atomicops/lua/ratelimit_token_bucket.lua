-- description: Token bucket on server time: take ARGV[3] tokens from KEYS[1] (capacity ARGV[1], refilled at ARGV[2] per second); a negative cost refunds.
-- readonly: no
-- KEYS[1] bucket: hash {tokens: tokens at ts (decimal string), ts: server time in microseconds of that count}; absent means full
-- ARGV[1] capacity: most tokens the bucket holds, integer >= 1
-- ARGV[2] rate: tokens added per second, number > 0
-- ARGV[3] cost: tokens this call takes, integer <= capacity; 0 only looks, negative gives back (never above capacity)
-- returns: "allowed remaining reset_ms retry_after_ms tokens now_us" as one string (one bulk reply parses faster than an array): allowed 1 or 0; remaining whole tokens left; reset_ms until the bucket is full; retry_after_ms 0 if allowed, else until the cost is there; tokens exact (%.17g); now_us the server time used
-- result: fields
-- probe: 10 1 1
local capacity = tonumber(ARGV[1])
if not capacity or capacity < 1 or capacity ~= math.floor(capacity) then
  return redis.error_reply('INVALID capacity must be an integer >= 1, got ' .. tostring(ARGV[1]))
end
local rate = tonumber(ARGV[2])
-- rate ~= rate catches NaN; rate == math.huge would refill instantly and make 0/0 below.
if not rate or rate ~= rate or rate <= 0 or rate == math.huge then
  return redis.error_reply('INVALID rate must be a finite number > 0, got ' .. tostring(ARGV[2]))
end
-- Checked before anything is written: the expiry below is the time to fill up, and a
-- PEXPIRE that refuses it would fail after the tokens were taken.
if capacity * 1000 / rate > 9007199254740991 then
  return redis.error_reply('INVALID capacity / rate must fill the bucket within 2^53 ms, got ' .. tostring(ARGV[1]) .. ' / ' .. tostring(ARGV[2]))
end
local cost = tonumber(ARGV[3])
if not cost or cost ~= math.floor(cost) or cost > capacity then
  return redis.error_reply('INVALID cost must be an integer <= capacity, got ' .. tostring(ARGV[3]))
end

-- The server's clock, never the client's.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

local s = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens, ts = tonumber(s[1]), tonumber(s[2])
if not tokens or not ts then
  tokens, ts = capacity, now
end
-- A server clock stepped back must neither mint nor destroy tokens.
if ts > now then ts = now end
tokens = math.min(capacity, tokens + (now - ts) * rate / 1000000)

local allowed = cost <= tokens
local retry = 0
if allowed then
  tokens = math.min(capacity, tokens - cost)
  if tokens >= capacity then
    -- A full bucket is the same as no bucket.
    redis.call('DEL', KEYS[1])
  else
    redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'ts', now)
    -- Once full again the state is worth nothing: let it expire then. At an absolute
    -- time on TIME's clock, not a PEXPIRE: that counts from when the script started,
    -- which a descheduled server can put ms before the TIME read, and the key must not
    -- vanish while not yet full. (Expiry is checked against a command's start, never
    -- after its TIME, so a later call finds the key gone only once the bucket is full.)
    redis.call('PEXPIREAT', KEYS[1], math.ceil((now + (capacity - tokens) * 1000000 / rate) / 1000))
  end
else
  -- Rejected: nothing is written; refill is computed from ts on the next call.
  retry = math.max(1, math.ceil((cost - tokens) * 1000 / rate))
end
local reset = math.ceil((capacity - tokens) * 1000 / rate)
return string.format('%d %d %d %d %.17g %d', allowed and 1 or 0, math.floor(tokens), reset, retry, tokens, now)
