"""ReadWriteLock: readers share, a writer excludes, a waiting writer keeps new readers out.

Every test runs on redis, valkey and fakeredis (``backend``); the multi-process proofs
are in test_locks_fair_rw_multi_concurrency.py.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from atomicops import InvalidInput, LockNotAcquired, LockNotOwned, ReadWriteLock


def test_readers_share_and_a_writer_excludes(backend):
    kind, client = backend
    rw = ReadWriteLock("doc:1", ttl=10)
    first, second = rw.read(), rw.read()
    assert first.acquire(blocking=False) and second.acquire(blocking=False)
    assert first.fencing_token < second.fencing_token
    assert client.hget(rw.key, "readers") == b"2"
    writer = rw.write()
    assert not writer.acquire(blocking=False)
    first.release()
    assert not writer.acquire(blocking=False)
    second.release()
    assert not client.exists(rw.key)  # nobody holds it: nothing listed
    with rw.write(timeout=1) as w:
        assert w.fencing_token > second.fencing_token  # one fence, later than every read
        assert not rw.read().acquire(blocking=False)
        assert not rw.write().acquire(blocking=False)
        assert client.hget(rw.key, "owner") is not None
    assert rw.read().acquire(blocking=False)


def test_a_waiting_writer_keeps_new_readers_out(backend):
    rw = ReadWriteLock("doc:2", ttl=10)
    reader = rw.read()
    reader.acquire()
    got: dict[str, object] = {}

    def write() -> None:
        with rw.write(timeout=10) as w:
            got["token"] = w.fencing_token
            got["at"] = time.monotonic()

    thread = threading.Thread(target=write)
    thread.start()
    time.sleep(0.3)  # the writer is refused and waits
    late = rw.read()
    assert not late.acquire(blocking=False)  # behind the waiting writer
    released = time.monotonic()
    reader.release()
    thread.join(10)
    assert got["at"] >= released and got["at"] - released < 3  # woken by the last reader
    assert late.acquire(blocking=False)
    assert late.fencing_token > got["token"]  # type: ignore[operator]


def test_readers_blocked_by_a_writer_are_all_woken_by_its_release(backend):
    rw = ReadWriteLock("doc:3", ttl=10)
    writer = rw.write()
    writer.acquire()
    times: list[float] = []

    def read() -> None:
        with rw.read(timeout=10):
            times.append(time.monotonic())
            time.sleep(0.3)

    threads = [threading.Thread(target=read) for _ in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    released = time.monotonic()
    writer.release()
    for thread in threads:
        thread.join(10)
    assert len(times) == 3 and all(released <= at < released + 3 for at in times)


def test_a_lost_read_lease_raises_on_release(backend):
    kind, client = backend
    rw = ReadWriteLock("doc:4", ttl=10)
    reader = rw.read()
    reader.acquire()
    client.zrem(f"{rw.key}:readers", reader._owner)
    with pytest.raises(LockNotOwned):
        reader.release()


def test_leases_renew_and_extend(backend):
    kind, client = backend
    rw = ReadWriteLock("doc:5", ttl=0.4, auto_renew=True)
    with rw.read() as r:
        time.sleep(1)
        assert r.owned() and r.renewals >= 1
        r.extend(5)
    with rw.write() as w:
        time.sleep(1)
        assert w.ensure_owned() == w.fencing_token and w.renewals >= 1


def test_bad_input_is_refused():
    with pytest.raises(InvalidInput):
        ReadWriteLock("", ttl=10)
    with pytest.raises(InvalidInput):
        ReadWriteLock("doc", ttl=-1)
    with pytest.raises(InvalidInput):
        ReadWriteLock("doc", ttl=1).read(timeout=-1)


def test_with_raises_lock_not_acquired(backend):
    rw = ReadWriteLock("doc:6", ttl=10)
    held = rw.write()
    held.acquire()
    with pytest.raises(LockNotAcquired):
        with rw.read(timeout=0.2):
            pass
    with pytest.raises(LockNotAcquired):
        with rw.write(timeout=0):
            pass


async def test_async_twin(backend):
    rw = ReadWriteLock("doc:7", ttl=10)
    async with rw.read(timeout=5) as r1, rw.read(timeout=5) as r2:
        assert r1.fencing_token < r2.fencing_token
        task = asyncio.create_task(rw.write(timeout=10).aacquire())
        await asyncio.sleep(0.2)
        assert not task.done()
    assert await asyncio.wait_for(task, 10)


def test_listed_with_its_readers_or_its_writer(backend):
    from atomicops import scan_locks

    rw = ReadWriteLock("doc:list", ttl=10)
    with rw.read(), rw.read():
        [info] = [i for i in scan_locks().locks if i.kind == "rwlock"]
        assert (info.name, info.readers, info.owner) == ("doc:list", 2, None)
    with rw.write() as w:
        [info] = [i for i in scan_locks().locks if i.kind == "rwlock"]
        assert (info.readers, info.fencing_token, info.owner) == (0, w.fencing_token, w._owner)
    assert scan_locks().locks == ()


def test_a_writer_that_gives_up_lets_readers_in_at_once(backend):
    kind, client = backend
    rw = ReadWriteLock("doc:giveup", ttl=30)
    reader = rw.read()
    reader.acquire()
    got: dict[str, float] = {}

    def late_reader() -> None:
        with rw.read(timeout=10):
            got["at"] = time.monotonic()

    writer = rw.write()
    started = time.monotonic()
    # The writer waits 0.6 s; meanwhile a new reader arrives and waits behind it.
    thread = threading.Thread(target=late_reader)
    threading.Timer(0.2, thread.start).start()
    assert not writer.acquire(timeout=0.6)
    gave_up = time.monotonic()
    assert client.zcard(f"{rw.key}:writers") == 0  # its wish is gone with it
    time.sleep(0.3)
    thread.join(10)
    # Woken by the writer giving up, not by the wish lapsing (30 s away).
    assert "at" in got and started + 0.2 < got["at"] < gave_up + 2
    reader.release()
