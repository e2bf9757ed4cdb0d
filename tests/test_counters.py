"""Counters on redis, valkey and fakeredis: the seed sequence, bounds, TTL on create, exact
values (floats as the server's text, integers past 2**53), typed errors for bad input
with the key unchanged, and the async twins."""

from __future__ import annotations

import dataclasses
import math
from datetime import timedelta
from decimal import Decimal

import pytest
import redis

from atomicops import (
    CounterResult,
    DataError,
    InvalidInput,
    RedisUnavailable,
    abounded_decr,
    abounded_incr,
    acompare_and_set,
    aget_counter,
    aincr,
    aincr_float,
    areset_counter,
    bounded_decr,
    bounded_incr,
    compare_and_set,
    get_counter,
    incr,
    incr_float,
    key_for,
    registry,
    reset_counter,
)
from atomicops.primitives import counters as c
from tests.factories import ArticleFactory
from tests.servers import ScriptedServer, free_port

MAX = 2**53 - 1
INT64_MAX = 2**63 - 1


def calls(script: str) -> int:
    return registry.get(script).stats["calls"]


# -- the seed -------------------------------------------------------------------------


def test_seed_twelve_calls_limit_ten(backend):
    _, client = backend
    results = [bounded_incr("count", 10) for _ in range(12)]
    assert [r.value for r in results] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10, 10]
    assert [r.applied for r in results] == [True] * 10 + [False] * 2
    assert client.get("count") == b"10"


async def test_seed_twelve_calls_limit_ten_async(backend):
    _, client = backend
    results = [await abounded_incr("count", 10) for _ in range(12)]
    assert [r.value for r in results] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10, 10]
    assert [r.applied for r in results] == [True] * 10 + [False] * 2
    assert client.get("count") == b"10"


def test_result_is_a_small_frozen_dataclass():
    result = CounterResult(value=3, applied=False)
    assert dataclasses.is_dataclass(result) and not result
    assert CounterResult(3, True) and CounterResult(3, True) == CounterResult(value=3, applied=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.value = 4  # type: ignore[misc]


# -- bounded_incr / bounded_decr ------------------------------------------------------


def test_bounded_incr_by_amount_never_passes_the_limit(backend):
    _, client = backend
    steps = [bounded_incr("k", 10, 4) for _ in range(3)] + [bounded_incr("k", 10, 2)]
    assert [(r.value, r.applied) for r in steps] == [(4, True), (8, True), (8, False), (10, True)]
    assert client.get("k") == b"10"


def test_bounded_incr_limit_zero_never_applies_and_creates_nothing(backend):
    _, client = backend
    assert bounded_incr("k", 0, ttl=60) == CounterResult(0, False)
    assert client.exists("k") == 0


def test_bounded_incr_above_a_lowered_limit_holds_the_value(backend):
    _, client = backend
    client.set("k", 50)
    assert bounded_incr("k", 10) == CounterResult(50, False)
    assert client.get("k") == b"50"


def test_bounded_incr_ttl_is_set_on_create_only(backend):
    _, client = backend
    client.set("old", 1)
    assert bounded_incr("old", 10, ttl=60).value == 2
    assert client.pttl("old") == -1  # an existing counter keeps having no TTL
    bounded_incr("new", 10, ttl=timedelta(minutes=1))
    assert 59_000 <= client.pttl("new") <= 60_000
    bounded_incr("new", 10, ttl=1)  # a later call does not shorten (or renew) it
    assert client.pttl("new") > 1_000


def test_bounded_incr_sub_millisecond_ttl_still_expires(backend):
    _, client = backend
    bounded_incr("k", 10, ttl=0.0001)
    assert client.pttl("k") in (-2, 0, 1)  # rounded up to 1 ms, never "no TTL"


def test_bounded_decr_stops_at_the_floor(backend):
    _, client = backend
    client.set("stock", 3)
    results = [bounded_decr("stock", 0) for _ in range(5)]
    assert [(r.value, r.applied) for r in results] == [
        (2, True),
        (1, True),
        (0, True),
        (0, False),
        (0, False),
    ]
    assert client.get("stock") == b"0"
    assert bounded_decr("stock", -5, 5) == CounterResult(-5, True)


def test_bounded_decr_on_a_missing_counter(backend):
    _, client = backend
    assert bounded_decr("k", 0) == CounterResult(0, False)
    assert client.exists("k") == 0
    assert bounded_decr("k", -10, 3, ttl=60) == CounterResult(-3, True)
    assert client.get("k") == b"-3" and 59_000 <= client.pttl("k") <= 60_000


async def test_bounded_decr_async(backend):
    _, client = backend
    client.set("stock", 1)
    assert await abounded_decr("stock", 0) == CounterResult(0, True)
    assert await abounded_decr("stock", 0) == CounterResult(0, False)


def test_bounded_counters_work_up_to_two_to_the_53(backend):
    _, client = backend
    assert bounded_incr("k", MAX, MAX) == CounterResult(MAX, True)
    assert bounded_incr("k", MAX) == CounterResult(MAX, False)
    assert client.get("k") == str(MAX).encode()
    assert bounded_decr("n", -MAX, MAX) == CounterResult(-MAX, True)


# -- incr -----------------------------------------------------------------------------


def test_incr_adds_and_subtracts(backend):
    _, client = backend
    assert [incr("k"), incr("k", 5), incr("k", -10)] == [1, 6, -4]
    assert client.get("k") == b"-4"


def test_incr_ttl_is_set_when_the_key_is_created(backend):
    _, client = backend
    assert incr("hits", ttl=60) == 1
    first = client.pttl("hits")
    assert 59_000 <= first <= 60_000
    assert incr("hits", ttl=3600) == 2  # not renewed by later increments
    assert 0 < client.pttl("hits") <= first
    client.set("plain", 7)
    assert incr("plain", ttl=60) == 8
    assert client.pttl("plain") == -1


def test_incr_is_exact_past_two_to_the_53(backend):
    """INCRBY's reply reaches Lua as a double; the script returns the stored text instead."""
    _, client = backend
    client.set("big", 2**60)
    assert incr("big", 1) == 2**60 + 1  # a Lua number would say 2**60
    assert get_counter("big") == 2**60 + 1
    client.set("top", INT64_MAX - 1)
    assert incr("top") == INT64_MAX


async def test_incr_async(backend):
    _, client = backend
    assert await aincr("k", 3, ttl=60) == 3
    assert await aincr("k", -1) == 2
    assert 59_000 <= client.pttl("k") <= 60_000


# -- incr_float -----------------------------------------------------------------------


def test_incr_float_does_not_truncate(backend):
    """The seed's trap: a Lua number 0.5 comes back as 0; the script returns the text."""
    _, client = backend
    assert incr_float("f", 0.5) == Decimal("0.5")
    assert incr_float("g", 2.75) == Decimal("2.75")
    assert incr_float("g", Decimal("-0.25")) == Decimal("2.5") == get_float(client, "g")
    assert incr_float("g", 2) == Decimal("4.5")
    assert get_float(client, "f") == Decimal("0.5")


def get_float(client, key):
    return Decimal(client.get(key).decode())


def test_incr_float_returns_exactly_what_the_server_stores(backend):
    _, client = backend
    client.set("price", "10.50")
    values = [incr_float("price", 0.1) for _ in range(3)]
    assert values[-1] == get_float(client, "price")
    assert all(isinstance(v, Decimal) for v in values)


def test_incr_float_server_arithmetic(backend):
    kind, client = backend
    if kind == "fakeredis":
        pytest.skip(
            "fakeredis adds in binary double and prints 17 digits (0.1 -> 0.10000000000000001); "
            "Redis and Valkey add in long double and print the short form"
        )
    client.set("price", "10.50")
    assert incr_float("price", 0.1) == Decimal("10.6")
    assert incr_float("seed", 3.99) == Decimal("3.99")  # the seed's EVAL "return 3.99" gave 3
    assert [incr_float("x", 0.1) for _ in range(3)] == [Decimal(s) for s in ("0.1", "0.2", "0.3")]
    assert incr_float("y", Decimal("1E+2")) == Decimal("100")


def test_incr_float_ttl_on_create(backend):
    _, client = backend
    incr_float("f", 1.5, ttl=60)
    assert 59_000 <= client.pttl("f") <= 60_000
    client.set("g", "1.5")
    incr_float("g", 1.5, ttl=60)
    assert client.pttl("g") == -1


async def test_incr_float_async(backend):
    _, client = backend
    assert await aincr_float("f", 0.5) == Decimal("0.5")
    assert await aincr_float("f", 0.25) == Decimal("0.75") == get_float(client, "f")


# -- get_counter / reset_counter ------------------------------------------------------


def test_get_and_reset(backend):
    _, client = backend
    assert get_counter("k") == 0 and reset_counter("k") == 0
    incr("k", 41, ttl=60)
    incr("k")
    assert get_counter("k") == 42
    assert reset_counter("k") == 42
    assert client.exists("k") == 0 and get_counter("k") == 0
    incr("k", ttl=60)  # a fresh counter gets its TTL again
    assert 59_000 <= client.pttl("k") <= 60_000


async def test_get_and_reset_async(backend):
    _, client = backend
    client.set("k", 2**62)
    assert await aget_counter("k") == 2**62
    assert await areset_counter("k") == 2**62
    assert client.exists("k") == 0 and await aget_counter("k") == 0


def test_get_counter_is_a_read_only_script():
    assert registry.get(c.GET).readonly
    assert not any(registry.get(s).readonly for s in (c.BOUNDED_INCR, c.INCR, c.RESET))


@pytest.mark.django_db
def test_model_instance_pairs_work_everywhere(backend):
    _, client = backend
    article = ArticleFactory()
    key = (article, "views")
    assert bounded_incr(key, 10).value == 1
    assert bounded_decr(key, 0).value == 0
    assert incr(key, 5) == 5
    assert get_counter(key) == 5
    assert client.get(key_for(article, "views")) == b"5"
    assert reset_counter(key) == 5
    assert incr_float((article, "score"), 1.5) == Decimal("1.5")


# -- bad input: typed errors naming the key, key unchanged ----------------------------


INTEGER_OPS = {
    "bounded_incr": lambda key: bounded_incr(key, 10),
    "bounded_decr": lambda key: bounded_decr(key, 0),
    "incr": lambda key: incr(key),
    "get_counter": lambda key: get_counter(key),
    "reset_counter": lambda key: reset_counter(key),
}
ALL_OPS = {**INTEGER_OPS, "incr_float": lambda key: incr_float(key, 0.5)}


@pytest.mark.parametrize("op", INTEGER_OPS)
def test_counter_holding_a_non_integer(backend, op):
    _, client = backend
    client.set("c", "abc")
    with pytest.raises(DataError, match=r"on key 'c'.*not (hold )?an integer") as caught:
        INTEGER_OPS[op]("c")
    assert caught.value.key == "c"
    assert client.get("c") == b"abc"


@pytest.mark.parametrize("stored", ["1.5", "12abc", "", "007", " 1"])
def test_values_an_integer_counter_cannot_use(backend, stored):
    _, client = backend
    client.set("c", stored)
    for op in INTEGER_OPS.values():
        with pytest.raises(DataError):
            op("c")
    assert client.get("c") == stored.encode()


def test_float_counter_holding_a_non_number(backend):
    _, client = backend
    client.set("c", "abc")
    with pytest.raises(DataError, match="on key 'c'.*not hold a number") as caught:
        incr_float("c", 1.5)
    assert caught.value.key == "c" and client.get("c") == b"abc"


@pytest.mark.parametrize("op", ALL_OPS)
def test_key_of_the_wrong_type(backend, op):
    _, client = backend
    client.rpush("c", "a", "b")
    with pytest.raises(DataError, match="on key 'c'.*non-string") as caught:
        ALL_OPS[op]("c")
    assert caught.value.key == "c"
    assert client.lrange("c", 0, -1) == [b"a", b"b"]


async def test_async_errors_are_the_same(backend):
    _, client = backend
    client.set("c", "abc")
    client.rpush("l", "a")
    with pytest.raises(DataError, match="on key 'c'"):
        await abounded_incr("c", 10)
    with pytest.raises(DataError, match="on key 'l'"):
        await aincr("l")
    with pytest.raises(InvalidInput, match="'c'.*limit"):
        await abounded_incr("c", -1)
    assert client.get("c") == b"abc"


def test_result_past_the_64_bit_range(backend):
    _, client = backend
    client.set("c", INT64_MAX - 5)
    with pytest.raises(DataError, match="on key 'c'.*64-bit") as caught:
        incr("c", 10)
    assert caught.value.key == "c"
    assert client.get("c") == str(INT64_MAX - 5).encode()
    client.set("n", -(2**63) + 5)
    with pytest.raises(DataError, match="64-bit"):
        incr("n", -10)
    assert client.get("n") == str(-(2**63) + 5).encode()


@pytest.mark.parametrize("stored", [2**53, -(2**53), INT64_MAX])
def test_bounded_counter_beyond_two_to_the_53(backend, stored):
    _, client = backend
    client.set("c", stored)
    for op in (lambda: bounded_incr("c", 10), lambda: bounded_decr("c", 0)):
        with pytest.raises(DataError, match="beyond 2\\^53-1"):
            op()
    assert client.get("c") == str(stored).encode()


BAD_INT_ARGS = [
    pytest.param(lambda: bounded_incr("c", -1), "limit must be >= 0", id="limit<0"),
    pytest.param(lambda: bounded_incr("c", 10.0), "limit must be an integer", id="float-limit"),
    pytest.param(lambda: bounded_incr("c", 2**53), "limit .* beyond 2\\*\\*53", id="limit>2^53"),
    pytest.param(lambda: bounded_incr("c", 10, 1.5), "amount must be an integer", id="amount1.5"),
    pytest.param(lambda: bounded_incr("c", 10, "1"), "amount must be an integer", id="amount-str"),
    pytest.param(
        lambda: bounded_incr("c", 10, True), "amount must be an integer", id="amount-bool"
    ),
    pytest.param(
        lambda: bounded_incr("c", 10, Decimal(1)), "amount must be an integer", id="amount-dec"
    ),
    pytest.param(lambda: bounded_incr("c", 10, 0), "amount must be >= 1", id="amount0"),
    pytest.param(lambda: bounded_incr("c", 10, -1), "amount must be >= 1", id="amount<0"),
    pytest.param(lambda: bounded_incr("c", MAX, MAX + 1), "beyond 2\\*\\*53", id="amount>2^53"),
    pytest.param(lambda: bounded_decr("c", -(2**53)), "floor must be >=", id="floor<-2^53"),
    pytest.param(lambda: bounded_decr("c", None), "floor must be an integer", id="floor-none"),
    pytest.param(lambda: bounded_decr("c", 0, 0), "amount must be >= 1", id="decr-amount0"),
    pytest.param(lambda: incr("c", 2**53), "beyond 2\\*\\*53", id="incr>2^53"),
    pytest.param(lambda: incr("c", -(2**53)), "amount must be >=", id="incr<-2^53"),
    pytest.param(lambda: incr("c", 0.5), "amount must be an integer", id="incr-float"),
    pytest.param(lambda: incr("c", None), "amount must be an integer", id="incr-none"),
]


@pytest.mark.parametrize(("call", "message"), BAD_INT_ARGS)
def test_bad_integer_arguments_are_rejected_before_sending(backend, call, message):
    _, client = backend
    client.set("c", 5)
    before = {s: calls(s) for s in (c.BOUNDED_INCR, c.BOUNDED_DECR, c.INCR)}
    with pytest.raises(InvalidInput, match=message) as caught:
        call()
    assert caught.value.key == "c" and "'c'" in str(caught.value)
    assert {s: calls(s) for s in before} == before  # nothing was sent
    assert client.get("c") == b"5"


BAD_TTLS = [0, -1, -0.5, timedelta(0), timedelta(seconds=-5), math.nan, math.inf, "60", True]


@pytest.mark.parametrize("ttl", BAD_TTLS, ids=repr)
def test_ttl_must_be_positive(backend, ttl):
    _, client = backend
    for call in (
        lambda: bounded_incr("c", 10, ttl=ttl),
        lambda: bounded_decr("c", -10, ttl=ttl),
        lambda: incr("c", ttl=ttl),
        lambda: incr_float("c", 1.5, ttl=ttl),
    ):
        with pytest.raises(InvalidInput, match="'c': ttl must be") as caught:
            call()
        assert caught.value.key == "c"
    assert client.exists("c") == 0


@pytest.mark.parametrize(
    "amount",
    [math.nan, math.inf, -math.inf, "0.1", None, True, Decimal("NaN"), Decimal("1e400")],
    ids=repr,
)
def test_incr_float_amount_must_be_a_finite_number(backend, amount):
    _, client = backend
    with pytest.raises(InvalidInput, match="'f': amount must be") as caught:
        incr_float("f", amount)
    assert caught.value.key == "f"
    assert client.exists("f") == 0


def test_a_pipeline_is_refused(backend):
    _, client = backend
    with pytest.raises(InvalidInput, match="not a pipeline"):
        bounded_incr("c", 10, client=client.pipeline())
    assert client.exists("c") == 0


def test_unreachable_server_is_a_typed_error():
    dead = redis.Redis(port=free_port(), socket_connect_timeout=0.5)
    with pytest.raises(RedisUnavailable, match="not applied") as caught:
        bounded_incr("c", 10, client=dead)
    assert caught.value.key == "c"


# -- the scripts check their arguments too (for callers that run them directly) -------


@pytest.mark.parametrize(
    ("script", "args", "message"),
    [
        (c.BOUNDED_INCR, ["-1", "1", "0"], "limit must be an integer in"),
        (c.BOUNDED_INCR, ["10", "0", "0"], "amount must be an integer in"),
        (c.BOUNDED_INCR, ["10", "1.5", "0"], "amount must be an integer in"),
        (c.BOUNDED_INCR, ["10", "0x10", "0"], "amount must be an integer in"),
        (c.BOUNDED_INCR, ["10", "9007199254740992", "0"], "amount must be an integer in"),
        (c.BOUNDED_INCR, ["10", "1", "-5"], "ttl_ms must be an integer in"),
        (c.BOUNDED_DECR, ["-9007199254740992", "1", "0"], "floor must be an integer in"),
        (c.BOUNDED_DECR, ["0", "abc", "0"], "amount must be an integer in"),
        (c.INCR, ["abc", "0"], "amount must be an integer in"),
        (c.INCR, ["1", "1.5"], "ttl_ms must be an integer in"),
        (c.INCR_FLOAT, ["0x10", "0"], "amount must be a finite decimal"),
        (c.INCR_FLOAT, ["inf", "0"], "amount must be a finite decimal"),
        (c.INCR_FLOAT, ["1e999", "0"], "amount must be a finite decimal"),
        (c.INCR_FLOAT, ["1.5", "-1"], "ttl_ms must be an integer in"),
    ],
)
def test_scripts_validate_their_arguments(backend, script, args, message):
    _, client = backend
    client.set("c", 5)
    with pytest.raises(InvalidInput, match=message):
        registry.get(script)(keys=["c"], args=args)
    assert client.get("c") == b"5"


# -- at most once: a lost reply is OutcomeUnknown, and the write is not sent again ----


@pytest.fixture
def silent():
    # The handshake (CLIENT SETINFO...) is answered: only the scripts' replies are lost.
    server = ScriptedServer({b"EVALSHA": None, b"EVAL": None})
    yield server
    server.close()


WRITES = [
    pytest.param(c.BOUNDED_INCR, lambda cl: bounded_incr("k", 10, client=cl), id="bounded_incr"),
    pytest.param("cas_set", lambda cl: compare_and_set("k", "a", "b", client=cl), id="cas"),
]


@pytest.mark.parametrize(("script", "call"), WRITES)
def test_lost_reply_is_outcome_unknown_and_sent_once(silent, script, call):
    import time

    from atomicops import OutcomeUnknown

    client = redis.Redis(port=silent.port, socket_timeout=0.2, protocol=2)
    try:
        with pytest.raises(OutcomeUnknown, match="on key 'k'.*may or may not") as caught:
            call(client)
        assert caught.value.key == "k"
        time.sleep(0.3)  # a retry would have arrived by now
        assert silent.received.count(registry.get(script).sha.encode()) == 1
    finally:
        client.close()


@pytest.mark.parametrize(
    ("script", "call"),
    [
        pytest.param(
            c.BOUNDED_INCR, lambda cl: abounded_incr("k", 10, client=cl), id="abounded_incr"
        ),
        pytest.param("cas_set", lambda cl: acompare_and_set("k", "a", "b", client=cl), id="acas"),
    ],
)
async def test_async_lost_reply_is_outcome_unknown_and_sent_once(silent, script, call):
    import asyncio

    import redis.asyncio

    from atomicops import OutcomeUnknown

    client = redis.asyncio.Redis(port=silent.port, socket_timeout=0.2, protocol=2)
    try:
        with pytest.raises(OutcomeUnknown, match="on key 'k'"):
            await call(client)
        await asyncio.sleep(0.3)
        assert silent.received.count(registry.get(script).sha.encode()) == 1
    finally:
        await client.aclose()
