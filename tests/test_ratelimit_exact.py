"""The exact window (issue #27): at most N admitted hits in any trailing window, exactly.

The algorithm is checked on a fixed clock (the script's test-only ``clock_ms`` argument,
which DRF's tests need too), the public functions on real server time on every backend;
batch, stacked limits and ``@rate_limit`` run the same logic. The real-time promises of
the issue (paced clients never refused, a burst then retries, ``1/day``,
``30000000/day``, several processes on one key) are in tests/test_ratelimit_promises.py.
"""

from __future__ import annotations

import time

import pytest
from django.http import HttpResponse
from django.test import RequestFactory

import atomicops
from atomicops import (
    DataError,
    InvalidInput,
    aexact_window,
    batch,
    exact_window,
    rate_limit,
)
from atomicops.primitives.calls import send
from atomicops.primitives.ratelimit import StackedLimit, exact_log_call, stack_call


def at(key: str, ms: int, limit: int = 3, window: int = 1000, amount: int = 1, history: int = 0):
    """One hit at a fixed clock (ms); the ExactWindow the script returned."""
    return send(exact_log_call(key, limit, window, amount, history=history, clock_ms=ms), None)


def test_exported_beside_sliding_window():
    assert {"exact_window", "aexact_window"} <= set(atomicops.__all__)
    assert atomicops.exact_window is exact_window


def test_admits_iff_fewer_than_n_in_the_trailing_window(backend):
    # DRF's rule: hits at or before now - window have left it.
    timeline = [(0, True), (0, True), (0, True), (0, False), (999, False), (1000, True)]
    timeline += [(1000, True), (1500, True), (1600, False), (1999, False), (2000, True)]
    got = [(ms, at("k", ms).result.allowed) for ms, _ in timeline]
    assert got == timeline


def test_retry_after_is_exact_and_exactly_enough(backend):
    for ms in (0, 10, 20):
        assert at("r", ms).result.allowed
    refused = at("r", 30).result
    assert not refused.allowed and refused.retry_after_ms == 0 + 1000 - 30
    assert refused.reset_ms == 20 + 1000 - 30 and refused.count == 3
    assert not at("r", 30 + refused.retry_after_ms - 1).result.allowed  # 1 ms early: no
    assert at("r", 30 + refused.retry_after_ms).result.allowed  # on the dot: yes


def test_retry_after_of_a_bigger_amount_waits_for_enough_hits_to_leave(backend):
    for ms in (0, 10, 20, 30, 40):
        assert at("b", ms, limit=5).result.allowed
    # 3 more need the three oldest (0, 10, 20) gone: at 20 + 1000.
    refused = at("b", 50, limit=5, amount=3).result
    assert refused.retry_after_ms == 20 + 1000 - 50
    assert not at("b", 1019, limit=5, amount=3).result.allowed
    assert at("b", 1020, limit=5, amount=3).result.allowed


def test_a_burst_in_one_ms_is_one_run(backend):
    _, client = backend
    for _ in range(100):
        assert at("burst", 5, limit=100, window=60_000).result.allowed
    assert client.llen("burst") == 1
    assert not at("burst", 5, limit=100, window=60_000).result.allowed
    assert client.lrange("burst", 0, -1) == [b"5 100 100"]


def test_memory_follows_what_the_client_did(backend):
    _, client = backend
    for ms in range(0, 50_000, 10):  # 5000 hits, 10 ms apart, at 10000/minute
        at("paced", ms, limit=10_000, window=60_000)
    assert client.llen("paced") == 5000
    # Once they left the window, the next hit pops them (amortised, one pop per run).
    at("paced", 50_000 + 60_000, limit=10_000, window=60_000)
    assert client.llen("paced") == 1


def test_history_returns_the_newest_runs(backend):
    for ms in (0, 0, 400, 800):
        log = at("h", ms, limit=5, history=2)
    assert log.runs == [(800, 1), (400, 1)] and log.oldest_ms == 0 and log.now_ms == 800
    assert log.result.count == 4


def test_a_lower_limit_on_the_same_key_counts_what_is_there(backend):
    for ms in (0, 1, 2):
        at("lower", ms)
    refused = at("lower", 3, limit=1).result
    assert not refused.allowed and refused.count == 3
    assert refused.retry_after_ms == 2 + 1000 - 3  # all three must leave for one


def test_sync_async_and_server_time(backend):
    results = [exact_window("pub", 2, 60_000) for _ in range(3)]
    assert [r.allowed for r in results] == [True, True, False]
    assert [r.remaining for r in results] == [1, 0, 0]
    assert 59_000 < results[2].retry_after_ms <= 60_000
    assert results[0].reset_ms == 60_000 and results[2].limit == 2


async def test_async_twin(backend):
    got = [(await aexact_window("apub", 2, 60_000)).allowed for _ in range(3)]
    assert got == [True, True, False]
    assert exact_window("apub", 2, 60_000).count == 2  # the same key, the same log


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((0, 1000), "limit"),
        ((3, 0), "window_ms"),
        ((3, 2**52 + 1), "window_ms"),
        ((2**53, 1000), "limit"),
        ((3, 1000, 4), "exceeds the limit"),
        ((3, 1000, 0), "amount"),
        ((True, 1000), "limit"),
        ((3, 1.5), "window_ms"),
    ],
)
def test_bad_input_is_typed_names_the_key_and_sends_nothing(sends, args, match):
    with pytest.raises(InvalidInput, match=match) as info:
        exact_window("bad-key", *args)
    assert info.value.key == "bad-key" and "'bad-key'" in str(info.value)
    assert sends == []


def test_wrong_type_is_a_data_error(backend):
    _, client = backend
    client.set("str", "x")
    with pytest.raises(DataError):
        exact_window("str", 3, 1000)
    client.rpush("list", "not a run")
    with pytest.raises(DataError):
        exact_window("list", 3, 1000)
    assert client.lrange("list", 0, -1) == [b"not a run"]


def test_in_a_batch(backend, sends):
    exact_window("warm", 1, 1000)  # loads the script
    sends.clear()
    with batch() as b:
        pending = [b.exact_window("bat", 2, 60_000) for _ in range(3)]
    assert len(sends) == 1
    assert [p.result().allowed for p in pending] == [True, True, False]


def test_stacked_with_other_kinds_all_or_nothing(backend):
    _, client = backend
    limits = [
        StackedLimit("exact_window", "se", 2, 60_000),
        StackedLimit("fixed_window", "sf", 5, 60_000),
    ]
    verdicts = [[r.allowed for r in send(stack_call(limits), None)] for _ in range(3)]
    assert verdicts == [[True, True], [True, True], [False, True]]
    assert int(client.get("sf")) == 2  # the refused request took nothing from the other
    refused = send(stack_call(limits), None)[0]
    assert refused.count == 2 and 59_000 < refused.retry_after_ms <= 60_000
    # The stack and the single function keep one log between them.
    assert exact_window("se", 3, 60_000).count == 3
    limits = [StackedLimit("exact_window", "se", 3, 60_000), limits[1]]
    assert [r.allowed for r in send(stack_call(limits), None)] == [False, True]


def test_stacked_decorators_and_algorithm_name(backend, sends):
    @rate_limit(2, 60_000, key="ip", group="ex-burst", algorithm="exact_window")
    @rate_limit(10, 60_000, key="ip", group="ex-long")
    def view(request):
        return HttpResponse("ok")

    request = RequestFactory().get("/", REMOTE_ADDR="10.7.7.7")
    view(request)
    sends.clear()
    statuses = [view(request).status_code for _ in range(2)]
    assert statuses == [200, 429] and len(sends) == 2
    assert 59 <= int(view(request)["Retry-After"]) <= 60


def test_stack_refuses_bad_exact_input_before_sending(sends):
    with pytest.raises(InvalidInput, match="exceeds the limit"):
        stack_call([StackedLimit("exact_window", "k", 2, 1000, 3)])
    with pytest.raises(InvalidInput, match="algorithm"):
        rate_limit(2, 1000, algorithm="exact")
    assert sends == []


def server_ms(client) -> int:
    seconds, micros = client.time()
    return seconds * 1000 + micros // 1000


@pytest.mark.parametrize("how", ["single", "stack"])
def test_a_bigger_amount_on_server_time_waits_for_the_third_oldest(backend, how):
    _, client = backend
    for _ in range(5):
        exact_window("amt", 5, 60_000)
        time.sleep(0.003)  # each hit in its own ms: five runs
    third = int(client.lrange("amt", 0, -1)[-3].split()[0])
    before = server_ms(client)
    if how == "single":
        refused = exact_window("amt", 5, 60_000, 3)
    else:
        refused = send(stack_call([StackedLimit("exact_window", "amt", 5, 60_000, 3)]), None)[0]
    after = server_ms(client)
    assert not refused.allowed and refused.count == 5
    assert third + 60_000 - after <= refused.retry_after_ms <= third + 60_000 - before
