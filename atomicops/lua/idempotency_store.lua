-- description: Store the response of the request holding the claim on an idempotency key (fenced: only its owner token may) and keep it for the replay window, within the client's bound on stored bytes; past the bound the claim is given up and nothing is stored.
-- readonly: no
-- KEYS[1] record: the idempotency record (see idempotency_claim); its 'owner' field exists only while the first request runs
-- KEYS[2] sizes: sorted set of the client's stored records, member '<bytes>:<stored ms>:<record>', score the server time (ms) it expires; same hash tag as KEYS[1]
-- KEYS[3] used: the sum of the bytes in KEYS[2] (string); expires with the client's last record
-- ARGV[1] owner: owner token the claim was granted to
-- ARGV[2] ttl_ms: how long the response is replayed, integer in [1, 2^53-1]
-- ARGV[3] meta: status, reason, headers and cookies of the response (JSON text)
-- ARGV[4] body: the response body, the bytes that were sent
-- ARGV[5] bound: the most bytes one client may have stored, integer >= 0 (0: no bound, nothing tallied)
-- ARGV[6] overhead: bytes counted per record on top of meta and body, integer >= 0
-- ARGV[7] record: the record's name within the client (for KEYS[2]'s members)
-- returns: 1 stored; 0 ARGV[1] does not hold the claim (its lease ran out, or it was released): nothing changed; 2 storing would pass the bound: the claim was given up, nothing stored
-- result: int
-- probe: atomicops-probe 1000 {} body 0 0 r
local ttl = tonumber(ARGV[2])
if not ttl or ttl < 1 or ttl > 9007199254740991 or ttl ~= math.floor(ttl) then
  return redis.error_reply('INVALID ttl_ms must be an integer in [1, 2^53-1], got ' .. tostring(ARGV[2]))
end
local bound = tonumber(ARGV[5])
if not bound or bound < 0 or bound ~= math.floor(bound) then
  return redis.error_reply('INVALID bound must be an integer >= 0, got ' .. tostring(ARGV[5]))
end
local overhead = tonumber(ARGV[6])
if not overhead or overhead < 0 or overhead ~= math.floor(overhead) then
  return redis.error_reply('INVALID overhead must be an integer >= 0, got ' .. tostring(ARGV[6]))
end
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then
  return 0
end
if bound > 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local used = tonumber(redis.call('GET', KEYS[3])) or 0
  -- Forget the records that have expired since (at most 500 a call, so a script stays
  -- short; the rest go on later calls, and until then they count: never too little).
  local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 500)
  for _, member in ipairs(gone) do
    used = used - tonumber(string.match(member, '^(%d+):'))
  end
  if used < 0 then used = 0 end
  local size = #ARGV[3] + #ARGV[4] + overhead
  if used + size > bound then
    -- Written before anything is deleted (a migrating cluster slot): the tally first.
    if #gone > 0 then
      local left = redis.call('PTTL', KEYS[2])
      redis.call('SET', KEYS[3], used, 'KEEPTTL')
      if left > 0 and redis.call('PTTL', KEYS[3]) < left then
        redis.call('PEXPIRE', KEYS[3], left)
      end
      redis.call('ZREM', KEYS[2], unpack(gone))
    end
    redis.call('DEL', KEYS[1])
    return 2
  end
  redis.call('ZADD', KEYS[2], now + ttl, size .. ':' .. now .. ':' .. ARGV[7])
  redis.call('SET', KEYS[3], used + size, 'KEEPTTL')
  if #gone > 0 then
    redis.call('ZREM', KEYS[2], unpack(gone))
  end
  -- The tally lives as long as the longest-lived record it counts.
  if redis.call('PTTL', KEYS[3]) < ttl then
    redis.call('PEXPIRE', KEYS[3], ttl)
  end
  if redis.call('PTTL', KEYS[2]) < ttl then
    redis.call('PEXPIRE', KEYS[2], ttl)
  end
end
redis.call('HSET', KEYS[1], 'state', 'done', 'meta', ARGV[3], 'body', ARGV[4])
-- Without an owner, a renewal that arrives late finds nothing to extend.
redis.call('HDEL', KEYS[1], 'owner')
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
