"""Stacked limits decided together: one script for all of them, all-or-nothing.

``ratelimit.stack_call`` is what stacked ``@rate_limit`` decorators run; a request
refused by one limit changes none of them. Round trips are counted at the wire.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.http import HttpResponse
from django.test import RequestFactory

from atomicops import (
    DataError,
    InvalidInput,
    fixed_window,
    rate_limit,
    sliding_window,
    token_bucket,
)
from atomicops.primitives.calls import asend, send
from atomicops.primitives.ratelimit import StackedLimit, stack_call
from tests.multiproc import run_processes

MIXED = [
    StackedLimit("fixed_window", "f", 5, 60_000),
    StackedLimit("sliding_window", "s", 4, 60_000),
    StackedLimit("token_bucket", "t", 3, 0.001),
]


def state(client) -> dict:
    return {
        "f": client.get("f"),
        "s": client.hgetall("s"),
        "t": client.hget("t", "tokens"),
    }


def test_all_or_nothing_across_algorithms(backend):
    _, client = backend
    verdicts = [[r.allowed for r in send(stack_call(MIXED), None)] for _ in range(3)]
    assert verdicts == [[True] * 3] * 3
    before = state(client)
    refused = send(stack_call(MIXED), None)
    # The bucket (3 tokens, barely refilling) refuses; the others would have allowed.
    assert [r.allowed for r in refused] == [True, True, False]
    assert refused[2].retry_after_ms > 0 and refused[0].retry_after_ms == 0
    assert state(client) == before  # a refused request consumed nothing anywhere
    assert int(client.get("f")) == 3
    assert [(r.count, r.remaining, r.limit) for r in refused] == [(3, 2, 5), (3, 1, 4), (3, 0, 3)]


def test_first_hit_reports_what_the_single_functions_report(backend):
    together = send(stack_call([limit._replace(key=f"a{limit.key}") for limit in MIXED]), None)
    alone = [
        fixed_window("bf", 5, 60_000),
        sliding_window("bs", 4, 60_000),
        token_bucket("bt", 3, 0.001),
    ]
    for mine, theirs in zip(together, alone, strict=True):
        assert (mine.allowed, mine.count, mine.remaining, mine.limit) == (
            theirs.allowed,
            theirs.count,
            theirs.remaining,
            theirs.limit,
        )
        assert abs(mine.reset_ms - theirs.reset_ms) < 1_000


async def test_async_is_the_same_script(backend, sends):
    sends.clear()
    results = await asend(stack_call(MIXED), None)
    assert [r.allowed for r in results] == [True] * 3
    assert len(sends) <= 2  # one, plus the pool's first SCRIPT LOAD round trip on some


def test_wrong_type_is_a_data_error_and_nothing_is_applied(backend):
    _, client = backend
    client.set("s", "not a hash")
    with pytest.raises(DataError):
        send(stack_call(MIXED), None)
    assert client.get("f") is None


def _ip_and_user():
    @rate_limit(50, 60_000, key="ip", group="stack-ip")
    @rate_limit(30, 60_000, key="user", group="stack-user")
    def view(request):
        return HttpResponse("ok")

    return view


def _request(user: int = 7):
    request = RequestFactory().get("/", REMOTE_ADDR="10.1.2.3")
    request.user = SimpleNamespace(is_authenticated=True, pk=user)
    return request


def test_stacked_decorators_are_one_round_trip_and_all_or_nothing(backend, sends):
    _, client = backend
    view = _ip_and_user()
    view(_request())  # the pool's first call also loads the scripts
    sends.clear()
    responses = [view(_request()) for _ in range(34)]
    assert len(sends) == 34  # one round trip per request for both limits
    assert {send.commands[-1][0] for send in sends} == {"EVALSHA"}
    assert [r.status_code for r in responses] == [200] * 29 + [429] * 5
    assert int(client.get("atomicops:rl:fixed_window:{stack-ip|ip:10.1.2.3}")) == 30
    # The headers describe the limit closest to refusing: the user's 30, not the IP's 50.
    assert responses[0]["RateLimit-Limit"] == "30"
    assert responses[28]["RateLimit-Remaining"] == "0"
    assert responses[-1]["RateLimit-Limit"] == "30" and int(responses[-1]["Retry-After"]) > 0
    # Another user behind the same address still has the IP's remaining 20.
    assert [view(_request(user=8)).status_code for _ in range(21)] == [200] * 20 + [429]


async def test_async_view_stack(backend, sends):
    @rate_limit(3, 60_000, key="ip", group="astack-ip")
    @rate_limit(2, 60_000, key="ip", group="astack-burst", algorithm="sliding_window")
    async def view(request):
        return HttpResponse("ok")

    request = RequestFactory().get("/", REMOTE_ADDR="10.9.9.9")
    statuses = [(await view(request)).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    _, client = backend
    assert int(client.get("atomicops:rl:fixed_window:{astack-ip|ip:10.9.9.9}")) == 2


def test_another_decorator_in_between_keeps_separate_calls(backend, sends):
    def passthrough(view):
        def inner(request):
            return view(request)

        return inner

    @rate_limit(5, 60_000, key="ip", group="sep-outer")
    @passthrough
    @rate_limit(1, 60_000, key="ip", group="sep-inner")
    def view(request):
        return HttpResponse("ok")

    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.2")
    view(request)
    sends.clear()
    assert view(request).status_code == 429
    assert len(sends) == 2  # the decorator in between runs between the two limits


def _hammer(url: str, n: int) -> list[int]:
    view = _ip_and_user()
    return [view(_request()).status_code for _ in range(n)]


@pytest.mark.slow
def test_eight_processes_exactly_thirty_pass_and_the_ip_counts_thirty(real_client, real_server):
    statuses = [s for batch in run_processes(_hammer, [(real_server.url, 15)] * 8) for s in batch]
    assert statuses.count(200) == 30 and statuses.count(429) == 90
    assert int(real_client.get("atomicops:rl:fixed_window:{stack-ip|ip:10.1.2.3}")) == 30
    assert int(real_client.get("atomicops:rl:fixed_window:{stack-user|user:7}")) == 30


def test_stack_refuses_bad_input_before_sending(sends):
    with pytest.raises(InvalidInput):
        stack_call([StackedLimit("fixed_window", "k", 0, 1000)])
    with pytest.raises(InvalidInput):
        stack_call([StackedLimit("leaky_bucket", "k", 1, 1000)])
    assert not sends


def test_the_script_checks_its_arguments_too(real_client):
    from atomicops import registry

    script = registry.get("ratelimit_stack")
    with pytest.raises(InvalidInput, match="kind must be f, s, e or t"):
        script(keys=["k"], args=["x", 1, 1000, 1], client=real_client)
