-- description: Give up the claim on an idempotency key (the view raised or answered 5xx), so the client's retry runs the view again; only the owner token may.
-- readonly: no
-- KEYS[1] record: the idempotency record (see idempotency_claim)
-- ARGV[1] owner: owner token the claim was granted to
-- returns: 1 released; 0 ARGV[1] does not hold the claim (its lease ran out, or the response is stored): nothing changed
-- result: int
-- probe: atomicops-probe
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
return 1
