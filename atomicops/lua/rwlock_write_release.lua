-- description: Release the write lease of the read-write lock if ARGV[1] holds it, waking the next writer if one waits and every reader that asked; else drop ARGV[1]'s wish to write (a waiting writer giving up), waking the readers if no wish is left.
-- readonly: no
-- KEYS[1] lock: hash {owner, token, w} of the writer (see rwlock_write_acquire)
-- KEYS[2] writers: sorted set of waiting writers, owner -> when its wish lapses
-- KEYS[3] asked: how many refused readers may be blocked on the readers' wake-up list
-- KEYS[4] read_wake: the readers' wake-up list; gets as many tokens as readers asked (at most 10000)
-- KEYS[5] write_wake: the writers' wake-up list; gets one token when a writer waits
-- ARGV[1] owner: owner token of the write lease being released
-- ARGV[2] wake_ttl_ms: how long unclaimed wake-up tokens stay (integer >= 1)
-- returns: 1 released; 0 ARGV[1] does not hold the write lease (expired or taken over; a waiter giving up): nothing changed but its own wish to write
-- result: int
-- probe: atomicops-probe 1000
local wake_ttl = tonumber(ARGV[2])
if not wake_ttl or wake_ttl < 1 or wake_ttl ~= math.floor(wake_ttl) then
  return redis.error_reply('INVALID wake_ttl_ms must be an integer >= 1, got ' .. tostring(ARGV[2]))
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function wake_readers()
  local asked = tonumber(redis.call('GET', KEYS[3])) or 0
  if asked <= 0 then
    return
  end
  -- Readers are woken even when a writer waits: they find it and wait again, counted
  -- again, so no reader sleeps past the writer it waited for.
  asked = math.min(asked, 10000)
  for i = 1, asked, 1000 do
    local batch = {}
    for j = i, math.min(i + 999, asked) do batch[#batch + 1] = '1' end
    redis.call('RPUSH', KEYS[4], unpack(batch))
  end
  redis.call('LTRIM', KEYS[4], -asked, -1)
  redis.call('PEXPIRE', KEYS[4], wake_ttl)
  redis.call('DEL', KEYS[3])
end
local held = redis.call('HMGET', KEYS[1], 'owner', 'w')
if held[1] ~= ARGV[1] then
  -- A waiting writer giving up: its wish no longer keeps readers out.
  if redis.call('ZREM', KEYS[2], ARGV[1]) == 1 and not held[1]
      and redis.call('ZCOUNT', KEYS[2], '(' .. now, '+inf') == 0 then
    wake_readers()
  end
  return 0
end
redis.call('DEL', KEYS[1])
if held[2] or redis.call('ZCOUNT', KEYS[2], '(' .. now, '+inf') > 0 then
  -- Push then trim (never DEL then push): see lock_release.
  redis.call('RPUSH', KEYS[5], '1')
  redis.call('LTRIM', KEYS[5], -1, -1)
  redis.call('PEXPIRE', KEYS[5], wake_ttl)
end
wake_readers()
return 1
