"""Rate limits on redis, valkey and fakeredis: the seed sequence, each algorithm against a
model driven by the server's own clock, refunds, retry times, typed errors for bad input."""

from __future__ import annotations

import math
import random
import time

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from atomicops import (
    AtomicOpsError,
    DataError,
    InvalidInput,
    RateLimited,
    RateLimitResult,
    RedisUnavailable,
    afixed_window,
    asliding_window,
    atoken_bucket,
    fixed_window,
    key_for,
    registry,
    sliding_window,
    token_bucket,
)
from atomicops.primitives import ratelimit as rl
from tests.factories import ArticleFactory
from tests.servers import free_port

SCRIPTS = [rl.FIXED_WINDOW, rl.SLIDING_WINDOW, rl.TOKEN_BUCKET]


def raw(hit: rl._Hit, client=None):
    """The script's reply for a prepared hit (same keys and args as the public call)."""
    return registry.get(hit.script)(keys=hit.keys, args=hit.args, client=client)


# -- fixed window ---------------------------------------------------------------------


def test_seed_sequence(backend):
    _, client = backend
    results = [fixed_window("rl:user", 10, 60_000) for _ in range(12)]
    pttl = client.pttl("rl:user")
    assert [r.count for r in results] == list(range(1, 13))
    assert [r.allowed for r in results] == [True] * 10 + [False] * 2
    assert [r.remaining for r in results] == [*range(9, -1, -1), 0, 0]
    assert 59_000 <= pttl <= 60_000
    assert all(59_000 <= r.reset_ms <= 60_000 for r in results)
    assert results[-1].retry_after_ms == results[-1].reset_ms
    assert results[0].retry_after_ms == 0
    assert {r.limit for r in results} == {10} and {r.key for r in results} == {"rl:user"}


async def test_async_seed_sequence(backend):
    _, client = backend
    results = [await afixed_window("rl:user", 10, 60_000) for _ in range(12)]
    assert [r.count for r in results] == list(range(1, 13))
    assert [r.allowed for r in results] == [True] * 10 + [False] * 2
    assert 59_000 <= client.pttl("rl:user") <= 60_000


def test_amount_counts_several_hits_and_rejected_hits_count_too(backend):
    _, client = backend
    results = [fixed_window("k", 10, 60_000, amount=3) for _ in range(4)]
    assert [(r.count, r.allowed, r.remaining) for r in results] == [
        (3, True, 7),
        (6, True, 4),
        (9, True, 1),
        (12, False, 0),
    ]
    assert int(client.get("k")) == 12


def test_window_ends_and_a_new_one_starts_on_the_next_hit(backend):
    _, client = backend
    # The third hit of a window is the first rejected one (should a slow machine cross a
    # window on the way, the next window shows the same).
    rejected = hit_until_rejected(lambda: fixed_window("k", 2, 500))
    assert rejected.count == 3 and 0 < rejected.reset_ms <= 500
    time.sleep(rejected.reset_ms / 1000 + 0.05)
    fresh = fixed_window("k", 2, 500)
    assert (fresh.allowed, fresh.count, fresh.reset_ms) == (True, 1, 500)
    assert 0 < client.pttl("k") <= 500


def test_counter_without_ttl_gets_a_window(backend):
    _, client = backend
    client.set("k", 4)  # written by something else, no TTL: would never reset
    result = fixed_window("k", 10, 1_000)
    assert result.count == 5
    assert 0 < client.pttl("k") <= 1_000


@pytest.mark.django_db
def test_model_instance_key(backend):
    _, client = backend
    article = ArticleFactory()
    result = fixed_window((article, "comments"), 3, 60_000)
    assert result.key == key_for(article, "comments")
    assert int(client.get(key_for(article, "comments"))) == 1


# -- sliding window -------------------------------------------------------------------


def test_sliding_window_admits_limit_then_rejects_without_counting(backend):
    _, client = backend
    results = [sliding_window("s", 5, 60_000) for _ in range(5)]
    assert [(r.allowed, r.count, r.remaining) for r in results] == [
        (True, n, 5 - n) for n in range(1, 6)
    ]
    before = client.hgetall("s")
    rejected = [sliding_window("s", 5, 60_000) for _ in range(3)]
    assert all(not r.allowed and r.count == 5 and r.remaining == 0 for r in rejected)
    assert client.hgetall("s") == before  # rejected hits write nothing
    assert all(0 < r.retry_after_ms <= 2 * 60_000 for r in rejected)
    assert all(0 < r.reset_ms <= 2 * 60_000 for r in results + rejected)
    assert 0 < client.pttl("s") <= 2 * 60_000 + 1


async def test_async_sliding_window(backend):
    results = [await asliding_window("s", 3, 60_000) for _ in range(4)]
    assert [r.allowed for r in results] == [True, True, True, False]


def sliding_counts(state, now, window):
    """(prev, cur) by the definition: hits in the window before this one and in this one."""
    if state is None:
        return 0, 0
    w, cur, prev = state
    win = now // window
    if w == win:
        return prev, cur
    if w == win - 1:
        return cur, 0
    return 0, 0


def test_sliding_window_matches_its_definition_on_server_time(backend):
    """Hits spread over several windows: every reply is checked against the definition,
    using the server time the script reports; retry times by brute force, ms by ms."""
    limit, window = 5, 120
    rng = random.Random(5)
    state = None  # (window index, hits in it, hits in the one before)
    checked_retry = 0
    for _ in range(60):
        amount = rng.choice([1, 1, 1, 2])
        hit = rl.sliding_window_call("s", limit, window, amount)
        allowed, count, reset, retry, now = raw(hit)
        win, elapsed = divmod(now, window)
        prev, cur = sliding_counts(state, now, window)
        used = prev * (window - elapsed) + cur * window  # estimate * window
        expected = used + amount * window <= limit * window
        assert bool(allowed) == expected, (now, prev, cur, amount)
        if expected:
            cur += amount
            used += amount * window
            state = (win, cur, prev)
            assert retry == 0
        else:
            # The first later ms at which the same hit fits if nothing else comes.
            def fits(d, prev=prev, cur=cur, elapsed=elapsed, amount=amount):
                e = elapsed + d
                p, c = (prev, cur) if e < window else (cur, 0) if e < 2 * window else (0, 0)
                e %= window
                return p * (window - e) + (c + amount) * window <= limit * window

            first = next(d for d in range(1, 3 * window) if fits(d))
            assert retry == first
            checked_retry += 1
        assert count == math.ceil(used / window)
        assert reset == (2 * window - elapsed if cur else window - elapsed if prev else 0)
        time.sleep(rng.uniform(0, 0.02))
    assert checked_retry > 5  # the run did hit the limit


def hit_until_rejected(call):
    """Call until rejected (a slow machine may cross a window or refill on the way)."""
    for _ in range(50):
        result = call()
        if not result.allowed:
            return result
    raise AssertionError("never rejected")


def test_sliding_window_retry_after_is_enough(backend):
    rejected = hit_until_rejected(lambda: sliding_window("s", 3, 200))
    assert rejected.retry_after_ms > 0
    time.sleep(rejected.retry_after_ms / 1000 + 0.005)
    assert sliding_window("s", 3, 200).allowed


def test_sliding_window_new_window_length_starts_afresh(backend):
    for _ in range(3):
        sliding_window("s", 3, 60_000)
    assert not sliding_window("s", 3, 60_000).allowed
    assert sliding_window("s", 3, 30_000).count == 1


# -- token bucket ---------------------------------------------------------------------


def test_token_bucket_starts_full_and_rejects_when_empty(backend):
    _, client = backend
    results = [token_bucket("b", 5, 0.1) for _ in range(6)]
    assert [r.allowed for r in results] == [True] * 5 + [False]
    assert [r.remaining for r in results[:5]] == [4, 3, 2, 1, 0]
    assert [r.count for r in results[:5]] == [1, 2, 3, 4, 5]
    # one token at 0.1/s is 10 s, less what came back since the first take (< 1 s)
    assert 9_000 <= results[-1].retry_after_ms <= 10_000
    assert 49_000 <= results[-1].reset_ms <= 50_000
    assert 0 < client.pttl("b") <= 50_001  # time to full (the expiry is rounded up to a ms)


async def test_async_token_bucket(backend):
    results = [await atoken_bucket("b", 2, 1.0) for _ in range(3)]
    assert [r.allowed for r in results] == [True, True, False]


def test_token_bucket_refills_at_its_rate_on_server_time(backend):
    """Every reply against the model: tokens = min(cap, tokens + dt * rate), to the bit."""
    capacity, rate = 4, 40.0
    rng = random.Random(7)
    tokens = ts = None
    rejected = 0
    for _ in range(60):
        cost = rng.choice([1, 1, 2, 3, 0, -1])
        allowed, remaining, reset, retry, exact, now = raw(
            rl.token_bucket_call("b", capacity, rate, cost)
        )
        if tokens is None:
            tokens, ts = float(capacity), now
        level = min(capacity, tokens + (now - min(ts, now)) * rate / 1_000_000)
        context = (cost, tokens, ts, now, exact, level)
        if allowed:
            assert cost <= level, context
            level = min(capacity, level - cost)
            tokens, ts = level, now
            assert retry == 0
        else:
            assert cost > level, context
            rejected += 1
            assert retry == max(1, math.ceil((cost - level) * 1000 / rate))
            # retry is the first ms at which the tokens are there
            assert level + retry * rate / 1000 >= cost - 1e-9
            # ...and not a ms later, up to float rounding: (3 - 2.4) * 1000 / 40 is
            # 15.000000000000002 in doubles, so the script (like this model) says 16.
            assert retry == 1 or level + (retry - 1) * rate / 1000 < cost + 1e-9
        assert float(exact) == level, context
        assert remaining == math.floor(level)
        assert reset == math.ceil((capacity - level) * 1000 / rate)
        time.sleep(rng.uniform(0, 0.03))
    assert rejected > 5


def test_token_bucket_retry_after_is_enough(backend):
    rejected = hit_until_rejected(lambda: token_bucket("b", 3, 10.0, cost=2))
    assert rejected.retry_after_ms > 0
    time.sleep(rejected.retry_after_ms / 1000 + 0.005)
    assert token_bucket("b", 3, 10.0, cost=2).allowed


def test_token_bucket_refund_and_peek(backend):
    _, client = backend
    for _ in range(5):
        token_bucket("b", 5, 0.001)  # slow refill: the numbers below are whole
    assert token_bucket("b", 5, 0.001, cost=0).remaining == 0  # peek takes nothing
    refunded = token_bucket("b", 5, 0.001, cost=-3)
    assert (refunded.allowed, refunded.remaining) == (True, 3)
    assert token_bucket("b", 5, 0.001, cost=3).allowed
    assert not token_bucket("b", 5, 0.001).allowed
    full = token_bucket("b", 5, 0.001, cost=-100)  # refunds stop at capacity
    assert (full.remaining, full.reset_ms) == (5, 0)
    assert client.exists("b") == 0  # a full bucket is no bucket


# -- results, errors ------------------------------------------------------------------


def test_raise_for_limit(backend):
    ok = fixed_window("k", 1, 60_000)
    assert ok.raise_for_limit() is ok
    rejected = fixed_window("k", 1, 60_000)
    with pytest.raises(RateLimited) as info:
        rejected.raise_for_limit()
    assert isinstance(info.value, AtomicOpsError)
    assert info.value.result is rejected
    assert info.value.key == "k"
    assert info.value.retry_after_ms == rejected.retry_after_ms > 0
    assert isinstance(rejected, RateLimitResult)


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_declare_probe_and_run_it(backend, script):
    found = registry.get(script)
    assert found.probe is not None and not found.readonly
    reply = found(keys=["atomicops:probe:{x}"], args=list(found.probe))
    assert reply[0] == 1  # allowed (the fixed window: its count, 1)


@pytest.mark.parametrize("name", ["fixed_window", "sliding_window"])
def test_wrong_type_and_non_integer_are_data_errors(backend, name):
    _, client = backend
    client.rpush("list", "x")
    with pytest.raises(DataError) as info:
        getattr(rl, name)("list", 5, 1_000)
    assert info.value.key == "list"
    assert client.lrange("list", 0, -1) == [b"x"]


def test_fixed_window_on_a_non_integer_and_bucket_on_a_list(backend):
    _, client = backend
    client.set("text", "abc")
    with pytest.raises(DataError, match="text"):
        fixed_window("text", 5, 1_000)
    client.rpush("list", "x")
    with pytest.raises(DataError, match="list"):
        token_bucket("list", 5, 1.0)


BAD = [
    (fixed_window, (0, 1_000), {}, "limit"),
    (fixed_window, (-1, 1_000), {}, "limit"),
    (fixed_window, (1.5, 1_000), {}, "limit"),
    (fixed_window, (True, 1_000), {}, "limit"),
    (fixed_window, ("10", 1_000), {}, "limit"),
    (fixed_window, (10, 0), {}, "window_ms"),
    (fixed_window, (10, -5), {}, "window_ms"),
    (fixed_window, (10, 1.5), {}, "window_ms"),
    (fixed_window, (10, 10**20), {}, "window_ms"),  # PEXPIRE would refuse it, after INCRBY
    (fixed_window, (10, 1_000), {"amount": 0}, "amount"),
    (fixed_window, (10, 1_000), {"amount": 1.5}, "amount"),
    (fixed_window, (10, 1_000), {"amount": 11}, "exceeds the limit"),
    (sliding_window, (0, 1_000), {}, "limit"),
    (sliding_window, (10, 0), {}, "window_ms"),
    (sliding_window, (10, 1_000), {"amount": 2.0}, "amount"),
    (sliding_window, (2**40, 2**20), {}, "2\\*\\*51"),
    (token_bucket, (0, 1.0), {}, "capacity"),
    (token_bucket, (5, 0), {}, "refill_rate"),
    (token_bucket, (5, -1.0), {}, "refill_rate"),
    (token_bucket, (5, float("nan")), {}, "refill_rate"),
    (token_bucket, (5, float("inf")), {}, "refill_rate"),
    (token_bucket, (5, "1"), {}, "refill_rate"),
    (token_bucket, (5, 10**400), {}, "refill_rate"),  # past float's range
    (token_bucket, (5, 1e-15), {}, "2\\*\\*53 ms"),  # PEXPIRE would refuse the time to fill
    (token_bucket, (2**60, 1.0), {}, "capacity"),
    (token_bucket, (5, 1.0), {"cost": 1.5}, "cost"),
    (token_bucket, (5, 1.0), {"cost": "1"}, "cost"),
    (token_bucket, (5, 1.0), {"cost": 6}, "exceeds the capacity"),
]


@pytest.mark.parametrize(("func", "args", "kwargs", "match"), BAD)
def test_bad_input_is_typed_and_changes_nothing(backend, func, args, kwargs, match):
    _, client = backend
    with pytest.raises(InvalidInput, match=match) as info:
        func("k", *args, **kwargs)
    assert info.value.key == "k"
    assert client.exists("k") == 0


async def test_async_bad_input_is_typed(backend):
    with pytest.raises(InvalidInput, match="limit"):
        await afixed_window("k", 0, 1_000)
    with pytest.raises(InvalidInput, match="window_ms"):
        await asliding_window("k", 1, 0)
    with pytest.raises(InvalidInput, match="cost"):
        await atoken_bucket("k", 1, 1.0, cost=0.5)


@pytest.mark.parametrize(
    ("script", "args", "match"),
    [
        (rl.FIXED_WINDOW, ["0", "1"], "window_ms"),
        (rl.FIXED_WINDOW, ["abc", "1"], "window_ms"),
        (rl.FIXED_WINDOW, ["100000000000000000000", "1"], "window_ms"),
        (rl.FIXED_WINDOW, ["1000", "1.5"], "amount"),
        (rl.FIXED_WINDOW, ["1000", "0"], "amount"),
        # Digits only: PEXPIRE and INCRBY take the strings as given.
        (rl.FIXED_WINDOW, ["6e4", "1"], "window_ms"),
        (rl.FIXED_WINDOW, ["1000", "1.0"], "amount"),
        (rl.SLIDING_WINDOW, ["0", "1000", "1"], "limit"),
        (rl.SLIDING_WINDOW, ["10", "-1", "1"], "window_ms"),
        (rl.SLIDING_WINDOW, ["10", "1000", "1.5"], "amount"),
        (rl.SLIDING_WINDOW, ["2000000", "2000000000", "1"], "limit \\* window_ms"),
        (rl.TOKEN_BUCKET, ["5", "nan", "1"], "rate"),
        (rl.TOKEN_BUCKET, ["5", "inf", "1"], "rate"),
        (rl.TOKEN_BUCKET, ["5", "1", "6"], "cost"),
        (rl.TOKEN_BUCKET, ["5", "1e-15", "1"], "rate"),
    ],
)
def test_scripts_check_their_own_arguments(backend, script, args, match):
    """Callers that skip the Python layer still cannot corrupt a limit."""
    _, client = backend
    with pytest.raises(InvalidInput, match=match):
        registry.get(script)(keys=["k"], args=args)
    assert client.exists("k") == 0


@pytest.mark.parametrize("func", [fixed_window, sliding_window, token_bucket])
def test_a_pipeline_is_refused_before_anything_is_queued(backend, func):
    _, client = backend
    pipe = client.pipeline()
    with pytest.raises(InvalidInput, match="not a pipeline"):
        func("k", 5, 1_000, client=pipe)
    assert len(pipe) == 0


def test_unreachable_server_is_redis_unavailable():
    # No retries: redis-py's default would spend seconds reconnecting to nothing.
    dead = redis.Redis(port=free_port(), socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    with pytest.raises(RedisUnavailable) as info:
        fixed_window("k", 1, 1_000, client=dead)
    assert info.value.key == "k"


def commandstats(client):
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): v["calls"] for name, v in stats.items()}


@pytest.mark.parametrize("call", [
    lambda: fixed_window("k", 1_000, 60_000),
    lambda: sliding_window("k", 1_000, 60_000),
    lambda: token_bucket("k", 1_000, 1.0),
])  # fmt: skip
def test_one_round_trip_per_hit(real_client, monkeypatch, call):
    call()  # the first call of a process on a pool also carries the SCRIPT LOADs
    writes = []
    send = redis.connection.AbstractConnection.send_packed_command

    def counting(self, command, check_health=True):
        writes.append(1)
        return send(self, command, check_health)

    before = commandstats(real_client)
    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counting)
    for _ in range(20):
        call()
    monkeypatch.undo()
    after = commandstats(real_client)
    assert len(writes) == 20
    # Commands run inside the script are counted too; what clients sent is EVALSHA only.
    assert after["evalsha"] - before["evalsha"] == 20
    assert after.get("eval", 0) == before.get("eval", 0)
    assert not any(name.startswith("script") and after[name] != before.get(name) for name in after)
