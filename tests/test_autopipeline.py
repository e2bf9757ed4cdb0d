"""AUTO_PIPELINE: async calls made while a round trip is in flight share the next one (#17, #26)."""

from __future__ import annotations

import asyncio

import pytest

from atomicops import DataError, abounded_incr, acompare_and_set, afixed_window, aincr
from atomicops.primitives import calls


@pytest.fixture
def pipelined(backend, settings):
    settings.ATOMICOPS = {**settings.ATOMICOPS, "AUTO_PIPELINE": True}
    assert calls.pipelined is not None
    yield backend
    settings.ATOMICOPS = {**settings.ATOMICOPS, "AUTO_PIPELINE": False}
    assert calls.pipelined is None


def test_on_by_default():
    assert calls.pipelined is not None


def _needs_a_round_trip_in_flight(kind: str) -> None:
    if kind == "fakeredis":
        # fakeredis answers within the write: depending on the Python version's stream
        # code a call may never suspend, so no round trip is ever in flight to share.
        pytest.skip("fakeredis has no round trip in flight")


async def test_concurrent_calls_share_one_round_trip(pipelined, sends):
    kind, client = pipelined
    _needs_a_round_trip_in_flight(kind)
    await aincr("warm")  # the pool's first call also carries the SCRIPT LOADs
    sends.clear()
    results = await asyncio.gather(*(abounded_incr("n", 50) for _ in range(64)))
    # The first is written at once (nothing was in flight); the 63 made while it was
    # share the next write.
    assert [len(send.commands) for send in sends] == [1, 63]
    assert sorted(r.value for r in results) == list(range(1, 51)) + [50] * 14
    assert sum(r.applied for r in results) == 50
    assert int(client.get("n")) == 50


async def test_each_call_keeps_its_own_result_and_error(pipelined, sends):
    _, client = pipelined
    client.hset("h", "f", "1")
    fine, broken, cas, hit = await asyncio.gather(
        aincr("a", 2),
        abounded_incr("h", 5),
        acompare_and_set("k", None, "v"),
        afixed_window("rl", 1, 60_000),
        return_exceptions=True,
    )
    assert fine == 2 and cas is True and hit.allowed
    assert isinstance(broken, DataError) and broken.key == "h"


async def test_a_call_cancelled_while_queued_is_not_sent(pipelined, sends):
    kind, client = pipelined
    _needs_a_round_trip_in_flight(kind)
    await aincr("warm")
    sends.clear()
    first = asyncio.ensure_future(aincr("first"))
    await asyncio.sleep(0)  # written at once: its round trip is in flight now
    task = asyncio.ensure_future(aincr("never"))
    await asyncio.sleep(0)  # queued behind it
    task.cancel()
    assert await first == 1
    kept = await aincr("kept")
    assert kept == 1 and client.get("never") is None
    assert all("never" not in command for send in sends for command in send.commands)
    assert task.cancelled()
