"""Lock(name, ttl, reentrant=True): nested holds counted on the server, per thread / task.

Every test runs on redis, valkey and fakeredis (``backend``).
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from atomicops import InvalidInput, Lock, LockNotAcquired, LockNotOwned
from atomicops.locks import ReentrantLock


def test_nested_acquires_count_on_the_server_and_the_last_release_frees(backend):
    kind, client = backend
    lock = Lock("re:nest", ttl=10, reentrant=True)
    assert isinstance(lock, ReentrantLock) and isinstance(lock, Lock)
    with lock:
        token = lock.fencing_token
        assert client.hget(lock.key, "n") == b"1"
        with lock:
            assert lock.depth == 2 and client.hget(lock.key, "n") == b"2"
            assert lock.fencing_token == token  # the same grant, not a new one
            with lock:
                assert client.hget(lock.key, "n") == b"3"
            assert client.hget(lock.key, "n") == b"2"
        assert lock.locked() and client.hget(lock.key, "n") == b"1"
        assert lock.depth == 1
    assert not lock.locked() and lock.depth == 0 and lock.fencing_token is None
    # A plain Lock of the same name is another owner: held out while the reentrant
    # one holds, free again after its last release.
    assert Lock("re:nest", ttl=10).acquire(blocking=False)


def test_another_owner_s_release_never_frees_it(backend):
    kind, client = backend
    lock = Lock("re:other", ttl=10, reentrant=True)
    lock.acquire()
    lock.acquire()
    plain = Lock("re:other", ttl=10)
    assert not plain.acquire(blocking=False)
    # Releasing with a foreign owner token (what another thread's or process's hold
    # sends) is refused by the script and changes nothing.
    from atomicops.registry import registry

    assert registry.get("lock_release")([lock.key, f"{lock.key}:wake"], ["someone", 1000, 0]) == 0
    assert registry.get("lock_release")([lock.key, f"{lock.key}:wake"], ["someone", 1000]) == 0
    assert client.hget(lock.key, "n") == b"2"
    lock.release()
    lock.release()
    assert not lock.locked()
    with pytest.raises(LockNotOwned):
        lock.release()


def test_another_thread_is_refused_then_served_after_the_last_release(backend):
    lock = Lock("re:threads", ttl=10, reentrant=True)
    got: dict[str, object] = {}

    def other(blocking: bool) -> None:
        try:
            if blocking:
                got["at"] = (lock.acquire(timeout=10), time.monotonic())
                got["depth"] = lock.depth
                lock.release()
            else:
                got["now"] = lock.acquire(blocking=False)
                with pytest.raises(LockNotAcquired):
                    with Lock("re:threads", ttl=10, reentrant=True, timeout=0):
                        pass
                got["with"] = True
        except BaseException as exc:  # reported to the main thread
            got["error"] = exc

    with lock:
        with lock:
            thread = threading.Thread(target=other, args=(False,))
            thread.start()
            thread.join(10)
            assert got.get("now") is False and got.get("with") is True, got
            thread = threading.Thread(target=other, args=(True,))
            thread.start()
            time.sleep(0.3)
        assert "at" not in got  # still depth 1 here: the other thread waits
        released = time.monotonic()
    thread.join(10)
    assert "error" not in got, got
    assert got["at"][0] is True and got["at"][1] >= released  # type: ignore[index]
    assert got["depth"] == 1


def test_a_nested_acquire_after_the_hold_was_lost_raises(backend):
    kind, client = backend
    lock = Lock("re:lost", ttl=10, reentrant=True)
    lock.acquire()
    client.delete(lock.key)  # its lease ran out
    other = Lock("re:lost", ttl=10)
    assert other.acquire(blocking=False)
    with pytest.raises(LockNotOwned):
        lock.acquire()
    assert other.owned() and lock.depth == 0


def test_reentrant_must_be_a_bool():
    with pytest.raises(InvalidInput):
        Lock("re:bad", ttl=10, reentrant="yes")  # type: ignore[arg-type]


async def test_async_reentrancy_is_per_task(backend):
    lock = Lock("re:tasks", ttl=10, reentrant=True)
    order: list[str] = []

    async def other() -> None:
        order.append("other waits")
        async with lock:
            order.append("other holds")

    async with lock:
        async with lock:
            assert lock.depth == 2
            task = asyncio.create_task(other())
            await asyncio.sleep(0.3)
            assert order == ["other waits"]  # another task is another owner
        await asyncio.sleep(0.1)
        assert order == ["other waits"]  # depth 1: still held
        order.append("first releases")
    await asyncio.wait_for(task, 10)
    assert order == ["other waits", "first releases", "other holds"]
