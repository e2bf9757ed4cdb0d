"""MultiLock: all or none over several lock names, by slot group, never deadlocking.

Every test runs on redis, valkey and fakeredis (``backend``) unless it says why not;
the multi-process transfer proof is in test_locks_fair_rw_multi_concurrency.py.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from redis.crc import key_slot

from atomicops import (
    AtomicOpsError,
    InvalidInput,
    Lock,
    LockNotAcquired,
    LockNotOwned,
    MultiLock,
    list_locks,
)
from atomicops.locks import lock_key


def same_slot_names(prefix: str, count: int = 2) -> list[str]:
    """``count`` lock names whose keys hash to one cluster slot (found by trying)."""
    seen: dict[int, list[str]] = {}
    for i in range(200_000):
        name = f"{prefix}{i}"
        found = seen.setdefault(key_slot(lock_key(name).encode()), [])
        found.append(name)
        if len(found) == count:
            return found
    raise AssertionError("no names sharing a slot")


def test_all_names_are_taken_and_released_with_a_token_each(backend):
    kind, client = backend
    m = MultiLock(["acct:2", "acct:1", ("acct:2")], ttl=10)
    with m:
        tokens = m.fencing_tokens
        assert set(tokens) == {"acct:1", "acct:2"}
        assert all(isinstance(token, int) and token > 0 for token in tokens.values())
        for name in ("acct:1", "acct:2"):
            # The very lock a Lock of that name uses: held out, and listed.
            assert client.hget(lock_key(name), "token") == str(tokens[name]).encode()
            assert not Lock(name, ttl=10).acquire(blocking=False)
        assert [info.name for info in list_locks()] == ["acct:1", "acct:2"]
        assert m.owned() and m.ensure_owned() == tokens
    assert m.fencing_tokens == {} and not client.exists(lock_key("acct:1"), lock_key("acct:2"))
    later = Lock("acct:1", ttl=10)
    assert later.acquire(blocking=False) and later.fencing_token > tokens["acct:1"]


def test_a_name_held_elsewhere_means_none_is_taken(backend):
    kind, client = backend
    other = Lock("acct:b", ttl=10)
    other.acquire()
    m = MultiLock(["acct:a", "acct:b", "acct:c"], ttl=10)
    assert not m.acquire(blocking=False)
    assert not client.exists(lock_key("acct:a"), lock_key("acct:c"))
    with pytest.raises(LockNotAcquired):
        with MultiLock(["acct:c", "acct:b"], ttl=10, timeout=0.2):
            pass
    assert not client.exists(lock_key("acct:a"), lock_key("acct:c"))
    other.release()
    assert m.acquire(blocking=False)
    m.release()


def test_names_in_one_slot_are_one_script_call(backend, sends):
    kind, client = backend
    names = same_slot_names("acct:")
    m = MultiLock(names, ttl=10)
    assert len(m._groups) == 1
    held = Lock(names[1], ttl=10)
    held.acquire()
    assert not m.acquire(blocking=False)
    assert not client.exists(lock_key(names[0]))  # all or none within the script
    held.release()
    sends.clear()
    assert m.acquire(blocking=False)
    assert len(sends) == 1  # one round trip for both names
    assert set(m.fencing_tokens) == set(names)
    m.release()
    assert len(sends) == 2
    assert not client.exists(lock_key(names[0]), lock_key(names[1]))


def test_a_blocked_multilock_waits_for_the_name_that_refused_and_wakes_on_release(backend):
    holder = Lock("acct:z", ttl=10)
    holder.acquire()
    got: dict[str, float] = {}

    def wait() -> None:
        with MultiLock(["acct:y", "acct:z"], ttl=10, timeout=10):
            got["at"] = time.monotonic()

    thread = threading.Thread(target=wait)
    thread.start()
    time.sleep(0.3)
    assert "at" not in got
    released = time.monotonic()
    holder.release()
    thread.join(10)
    assert got["at"] >= released and got["at"] - released < 3  # woken, not a lease timeout


def test_a_wait_while_holding_keeps_the_held_names_alive(backend):
    kind, client = backend
    m = MultiLock(["acct:p", "acct:q"], ttl=0.6)
    second = m._groups[1].names[0]
    blocker = Lock(second, ttl=30)
    blocker.acquire()
    first_key = lock_key(m._groups[0].names[0])
    done: dict[str, bool] = {}
    thread = threading.Thread(target=lambda: done.setdefault("ok", m.acquire(timeout=10)))
    thread.start()
    time.sleep(1.5)  # more than two leases: the held first name must have been extended
    assert client.hget(first_key, "owner") is not None
    blocker.release()
    thread.join(10)
    assert done["ok"] and m.held
    m.release()


def test_release_after_a_lost_name_raises_and_frees_the_others(backend):
    kind, client = backend
    m = MultiLock(["acct:l1", "acct:l2"], ttl=10)
    m.acquire()
    client.delete(lock_key("acct:l1"))
    thief = Lock("acct:l1", ttl=10)
    thief.acquire()
    with pytest.raises(LockNotOwned):
        m.release()
    assert thief.owned() and not client.exists(lock_key("acct:l2"))


def test_bad_names_are_refused():
    for names in ("acct:1", [], ["acct:1", ""], [1]):
        with pytest.raises(InvalidInput):
            MultiLock(names, ttl=10)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        MultiLock(["a"], ttl=0)


async def test_async_twin(backend):
    kind, client = backend
    m = MultiLock(["acct:x1", "acct:x2"], ttl=10)
    async with m:
        assert set(m.fencing_tokens) == {"acct:x1", "acct:x2"}
        other = MultiLock(["acct:x2", "acct:x1"], ttl=10)
        task = asyncio.create_task(other.aacquire(timeout=10))
        await asyncio.sleep(0.2)
        assert not task.done()
    assert await asyncio.wait_for(task, 10)
    assert await other.aowned()
    await other.arelease()


def test_an_error_on_a_later_group_gives_back_the_earlier_ones(backend):
    kind, client = backend
    m = MultiLock(["acct:e1", "acct:e2"], ttl=10)
    first, second = (group.names[0] for group in m._groups)
    client.set(lock_key(second), "not a lock hash")  # the server refuses that name's script
    with pytest.raises(AtomicOpsError):
        m.acquire(blocking=False)
    assert not client.exists(lock_key(first)) and not m.held


def test_extend_and_a_loss_found_by_a_renewal(backend):
    kind, client = backend
    lost: list[MultiLock] = []
    m = MultiLock(["acct:r1", "acct:r2"], ttl=0.5, auto_renew=True, on_lost=lost.append)
    with pytest.raises(LockNotOwned, match="the block stops here"):
        with m:  # and its exit raises no second LockNotOwned on top of the block's
            time.sleep(1.2)  # renewed past its lease
            assert m.owned() and not m.lost
            m.extend(5)
            assert 4000 < client.pttl(lock_key("acct:r1")) <= 5000
            client.delete(lock_key("acct:r2"))
            Lock("acct:r2", ttl=10).acquire()
            with pytest.raises(LockNotOwned):
                m.ensure_owned()
            assert m.lost and lost == [m]
            raise LockNotOwned("the block stops here")
    assert not client.exists(lock_key("acct:r1"))  # the other name was given back
