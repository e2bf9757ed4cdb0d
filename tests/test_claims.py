"""atomicops.leases.claims: background renewal of claims and the flow drivers."""

from __future__ import annotations

import asyncio
import time

import pytest

from atomicops import InvalidInput, registry
from atomicops.engine import background
from atomicops.engine import run as engine_run
from atomicops.leases import claims
from atomicops.leases.lease import wake_wait


def claim(client, key: str, owner: str, lease_ms: int) -> None:
    client.hset(key, "owner", owner)
    client.pexpire(key, lease_ms)


def test_a_held_claim_outlives_its_lease_and_lapses_after_stop(backend):
    client = backend[1]
    claim(client, "c", "me", 300)
    held = claims.hold("c", "me", 300)
    time.sleep(0.7)
    assert client.exists("c") and not held.lost
    held.stop()
    time.sleep(0.45)
    assert not client.exists("c")


def test_a_claim_taken_over_is_reported_lost(backend):
    client = backend[1]
    claim(client, "c", "me", 300)
    held = claims.hold("c", "me", 300)
    client.hset("c", "owner", "someone else")
    deadline = time.monotonic() + 2
    while not held.lost:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    held.stop()
    assert client.hget("c", "owner") == b"someone else"


async def test_async_hold_renews_in_a_task(backend):
    client = backend[1]
    claim(client, "a", "me", 300)
    held = claims.ahold("a", "me", 300)
    await asyncio.sleep(0.7)
    assert client.exists("a")
    held.stop()
    await asyncio.sleep(0)
    assert held._task is not None and held._task.cancelled()


def test_finished_claims_do_not_pile_up_in_the_renewer():
    for _ in range(background.COMPACT_AFTER * 3):
        claims.hold("k", "o", 30_000).stop()
    assert len(background.runner._heap) < background.COMPACT_AFTER * 2
    assert not [job for job in background.runner.jobs() if job.name.startswith("renewal of claim")]


def test_the_wake_up_wait_claims_share_with_locks_returns_on_a_token_or_times_out(backend):
    client = backend[1]
    client.rpush("wake", "1")
    assert engine_run.run(wake_wait(client, "wake", 1)) is not None
    started = time.monotonic()
    assert engine_run.run(wake_wait(client, "wake", 0.05)) is None
    assert time.monotonic() - started < 1


def test_the_runner_throws_what_perform_raised_into_the_flow():
    seen = []

    def flow():
        try:
            yield ("fail",)
        except ValueError as exc:
            seen.append(exc)
            result = yield ("ok",)
            return result

    def perform(op):
        if op[0] == "fail":
            raise ValueError("boom")
        return "done"

    assert engine_run.run(flow(), perform) == "done"
    assert len(seen) == 1


async def test_the_async_runner_throws_even_a_cancellation_into_the_flow():
    released = []

    def flow():
        try:
            yield ("run the view",)
        except asyncio.CancelledError:
            released.append(True)  # the flow releases its claim, then lets it pass
            raise

    async def perform(op):
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await engine_run.arun(flow(), perform)
    assert released == [True]


def test_an_operation_nobody_performs_is_a_type_error():
    def flow():
        yield ("unknown",)

    with pytest.raises(TypeError, match="no engine operation"):
        engine_run.run(flow())


def test_extend_script_is_fenced(backend):
    client = backend[1]
    claim(client, "c", "me", 1000)
    extend = registry.get("claim_extend")
    assert extend(keys=["c"], args=["thief", 50_000]) == 0
    assert extend(keys=["c"], args=["me", 50_000]) == 1
    assert client.pttl("c") > 1000
    with pytest.raises(InvalidInput, match="lease_ms"):
        extend(keys=["c"], args=["me", 0])
