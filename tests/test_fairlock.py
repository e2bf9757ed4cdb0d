"""FairLock: waiters served in the order they began waiting; dead waiters skipped.

Every test runs on redis, valkey and fakeredis (``backend``); the multi-process proofs
(order of 6 processes, a killed waiter) are in test_locks_fair_rw_multi_concurrency.py.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from atomicops import FairLock, InvalidInput, Lock, LockNotAcquired, LockNotOwned, scan_locks


def waiters_in_order(holder: FairLock, count: int, gap: float) -> tuple[list[int], list]:
    """Start ``count`` waiting threads ``gap`` apart; returns (grant order, threads)."""
    order: list[int] = []

    def wait(index: int) -> None:
        with FairLock(holder.name, ttl=10, timeout=20):
            order.append(index)
            time.sleep(0.05)

    threads = []
    for index in range(count):
        thread = threading.Thread(target=wait, args=(index,))
        thread.start()
        threads.append(thread)
        time.sleep(gap)
    return order, threads


def test_waiters_are_served_in_order_after_a_release(backend):
    holder = FairLock("fair:release", ttl=10)
    holder.acquire()
    order, threads = waiters_in_order(holder, 4, 0.2)
    holder.release()
    for thread in threads:
        thread.join(20)
    assert order == [0, 1, 2, 3]


def test_waiters_are_served_in_order_after_a_lapsed_lease(backend):
    kind, client = backend
    holder = FairLock("fair:lapse", ttl=10)
    holder.acquire()
    order, threads = waiters_in_order(holder, 3, 0.2)
    client.pexpire(holder.key, 1)  # the holder died: its lease runs out unreleased
    for thread in threads:
        thread.join(20)
    assert order == [0, 1, 2]


def test_a_non_blocking_acquire_does_not_jump_the_line(backend):
    holder = FairLock("fair:jump", ttl=10)
    holder.acquire()
    got: dict[str, bool] = {}
    waiter = FairLock("fair:jump", ttl=10)
    thread = threading.Thread(target=lambda: got.setdefault("w", waiter.acquire(timeout=10)))
    thread.start()
    time.sleep(0.3)
    holder.release()
    # The waiter is first in line (or already holds it): either way, no jumping ahead.
    assert not FairLock("fair:jump", ttl=10).acquire(blocking=False)
    thread.join(10)
    assert got["w"]


def test_a_waiter_that_gives_up_leaves_the_line(backend):
    kind, client = backend
    holder = FairLock("fair:leave", ttl=10)
    holder.acquire()
    assert not FairLock("fair:leave", ttl=10).acquire(timeout=0.3)
    assert client.zcard(f"{holder.key}:queue") == 0
    with pytest.raises(LockNotAcquired):
        with FairLock("fair:leave", ttl=10, timeout=0.2):
            pass
    holder.release()
    with FairLock("fair:leave", ttl=10, timeout=0) as again:
        assert again.fencing_token > holder.fencing_token


def test_a_dead_waiter_is_dropped_by_the_next_look_at_the_line(backend, monkeypatch):
    kind, client = backend
    holder = FairLock("fair:dead", ttl=10)
    holder.acquire()
    queue, alive = f"{holder.key}:queue", f"{holder.key}:alive"
    # A waiter that joined the line and died: its heartbeat lapsed a moment ago.
    client.zadd(queue, {"dead-waiter": 1})
    client.zadd(alive, {"dead-waiter": 1})
    holder.release()
    taker = FairLock("fair:dead", ttl=10)
    assert taker.acquire(blocking=False)
    assert client.zscore(queue, "dead-waiter") is None


def test_release_after_takeover_raises(backend):
    kind, client = backend
    lock = FairLock("fair:lost", ttl=10)
    lock.acquire()
    client.delete(lock.key)
    other = FairLock("fair:lost", ttl=10)
    assert other.acquire(blocking=False)
    with pytest.raises(LockNotOwned):
        lock.release()
    assert other.owned()


def test_listed_with_its_kind_and_separate_from_a_lock(backend):
    lock = FairLock("fair:list", ttl=10)
    lock.acquire()
    assert Lock("fair:list", ttl=10).acquire(blocking=False)  # another lock's keys
    found = {(info.kind, info.name, info.fencing_token) for info in scan_locks().locks}
    assert ("fairlock", "fair:list", lock.fencing_token) in found
    assert any(kind == "lock" and name == "fair:list" for kind, name, _ in found)


def test_bad_input_is_refused():
    with pytest.raises(InvalidInput):
        FairLock("", ttl=10)
    with pytest.raises(InvalidInput):
        FairLock("x", ttl=10, timeout=-1)


async def test_async_twin_serves_in_order(backend):
    holder = FairLock("fair:async", ttl=10)
    await holder.aacquire()
    order: list[int] = []

    async def wait(index: int) -> None:
        async with FairLock("fair:async", ttl=10, timeout=20):
            order.append(index)

    tasks = []
    for index in range(3):
        tasks.append(asyncio.create_task(wait(index)))
        await asyncio.sleep(0.2)
    await holder.arelease()
    await asyncio.wait_for(asyncio.gather(*tasks), 20)
    assert order == [0, 1, 2]
