"""Semaphore: at most ``limit`` holders, leases that free crashed holders' slots, tokens.

Functional tests run on redis, valkey and fakeredis; the SIGKILL proofs run several
processes against the real servers.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time
from pathlib import Path

import pytest
import redis

from atomicops import (
    InvalidInput,
    LockNotAcquired,
    LockNotOwned,
    OutcomeUnknown,
    Semaphore,
)
from atomicops.engine import wire
from tests.test_locks import arelease_later, release_later, waits  # noqa: F401  (a fixture)


def lease_ends(client: redis.Redis, sem: Semaphore) -> dict[bytes, float]:
    return dict(client.zrange(sem.key, 0, -1, withscores=True))


def test_never_more_than_limit_holders_and_each_grant_has_a_token(backend):
    _, client = backend
    sems = [Semaphore("pool", 2, ttl=10) for _ in range(3)]
    assert [s.acquire(blocking=False) for s in sems] == [True, True, False]
    assert sems[0].fencing_token < sems[1].fencing_token
    assert sems[2].fencing_token is None
    assert sems[0].holders() == 2
    assert client.zcard("atomicops:sem:{pool}") == 2
    assert int(client.hget("atomicops:sem:{pool}:tokens", sems[1]._owner)) == sems[1].fencing_token
    sems[0].release()
    assert sems[2].acquire(blocking=False)
    assert sems[2].fencing_token > sems[1].fencing_token  # tokens keep increasing across grants


def test_context_manager_and_timeout(backend):
    with Semaphore("pool", 1, ttl=10) as sem:
        assert sem.held
        with pytest.raises(LockNotAcquired):
            with Semaphore("pool", 1, ttl=10, timeout=0.1):
                pytest.fail("entered a full semaphore")
    assert not sem.held and sem.holders() == 0


def test_a_blocked_waiter_wakes_on_release(backend, waits):  # noqa: F811
    holder = Semaphore("pool", 1, ttl=60)  # not the 60 s lease: the release wakes it
    holder.acquire()
    thread, began = release_later(holder, 0.2, after=waits.started)
    assert Semaphore("pool", 1, ttl=10).acquire(timeout=20)
    acquired = time.monotonic()
    thread.join()
    assert waits.woken_by_release() and began[0] < acquired


def test_a_crashed_holder_s_slot_frees_after_its_ttl(backend):
    crashed = Semaphore("pool", 1, ttl=0.2)
    crashed.acquire()  # and never released
    waiter = Semaphore("pool", 1, ttl=10)
    assert waiter.acquire(blocking=False) is False
    started = time.monotonic()
    assert waiter.acquire(timeout=10)
    assert time.monotonic() - started < 3
    assert waiter.fencing_token > crashed.fencing_token


def test_release_and_extend_after_the_lease_ran_out_change_nothing(backend):
    _, client = backend
    old = Semaphore("pool", 2, ttl=0.05)
    other = Semaphore("pool", 2, ttl=100)
    old.acquire()
    other.acquire()
    time.sleep(0.15)
    before = lease_ends(client, old), client.pttl(old.key)
    with pytest.raises(LockNotOwned):
        old.extend(ttl=500)
    with pytest.raises(LockNotOwned, match="nothing was changed"):
        old.release()
    ends, pttl = lease_ends(client, old), client.pttl(old.key)
    assert ends == before[0] and 0 < pttl <= before[1]
    # The next grant frees the expired slot; the stale holder still cannot touch it.
    newcomer = Semaphore("pool", 2, ttl=100)
    assert newcomer.acquire(blocking=False)
    assert old._owner is None  # the failed release forgot it
    assert set(lease_ends(client, old)) == {other._owner.encode(), newcomer._owner.encode()}


def test_extend_resets_the_lease(backend):
    _, client = backend
    sem = Semaphore("pool", 2, ttl=1)
    sem.acquire()
    sem.extend(ttl=300)
    assert 290_000 < client.pttl(sem.key) <= 300_000
    assert sem.ensure_owned() == sem.fencing_token


def test_lost_acquire_reply_then_retry_gets_the_same_grant(backend, monkeypatch):
    _, client = backend
    real = wire.roundtrip
    lose = {"semaphore_acquire"}

    def roundtrip(send):
        replies = real(send)
        if send.context.what in lose:
            lose.discard(send.context.what)
            raise send.context.unknown(redis.ConnectionError("reply lost (simulated)"))
        return replies

    monkeypatch.setattr(wire, "roundtrip", roundtrip)
    sem = Semaphore("pool", 1, ttl=10)
    with pytest.raises(OutcomeUnknown):
        sem.acquire()
    [granted] = client.hvals(f"{sem.key}:tokens")
    assert sem.acquire(blocking=False)  # the lost grant, not a refusal by ourselves
    assert sem.fencing_token == int(granted) and client.zcard(sem.key) == 1


@pytest.mark.parametrize("limit", [0, -1, 1.5, "2", True, None])
def test_bad_limit_is_refused(limit):
    with pytest.raises(InvalidInput, match="limit") as info:
        Semaphore("pool", limit, ttl=10)
    assert info.value.key == "atomicops:sem:{pool}"


@pytest.mark.parametrize("ttl", [0, -1, float("nan")])
def test_bad_ttl_is_refused(ttl):
    with pytest.raises(InvalidInput, match="ttl"):
        Semaphore("pool", 2, ttl=ttl)


def test_empty_name_is_refused():
    with pytest.raises(InvalidInput, match="name"):
        Semaphore("", 2, ttl=10)


def test_the_script_validates_too(backend):
    from atomicops import registry

    keys = ["s:{x}", "s:{x}:t", "s:{x}:f", "s:{x}:w"]
    with pytest.raises(InvalidInput, match="limit"):
        registry.get("semaphore_acquire")(keys=keys, args=["me", 0, 1000])


async def test_async_twin_shares_the_scripts(backend, waits):  # noqa: F811
    first = Semaphore("pool", 1, ttl=10)
    first.acquire()
    async with Semaphore("pool", 2, ttl=10) as sem:
        assert sem.fencing_token > first.fencing_token
        assert await sem.aholders() == 2
        assert await sem.aowned()
    assert await Semaphore("pool", 2, ttl=10).aholders() == 1

    holder = Semaphore("async", 1, ttl=60)
    await holder.aacquire()
    task, began = arelease_later(holder, 0.2, after=waits.started)
    assert await Semaphore("async", 1, ttl=10).aacquire(timeout=20)
    acquired = time.monotonic()
    await task
    assert waits.woken_by_release() and began[0] < acquired


# -- real processes, killed with SIGKILL ------------------------------------------

LIMIT = 3
TTL = 1.0
_ctx = multiprocessing.get_context("fork")


def churn(log_path: str, stop_at: float) -> None:
    """Take a slot, hold it briefly, give it back, until ``stop_at``; log every section."""
    sem = Semaphore("pool", LIMIT, ttl=TTL)
    with open(log_path, "a", buffering=1) as log:
        while time.monotonic() < stop_at:
            if not sem.acquire(timeout=2):
                continue
            log.write(f"acq {time.monotonic()} {sem.fencing_token}\n")
            time.sleep(random.uniform(0.01, 0.04))
            log.write(f"rel {time.monotonic()}\n")
            sem.release()


def sections(log: Path, killed_at: float | None) -> list[tuple[float, float, int]]:
    """(start, end, token) of each section; a section cut short ends when it was killed."""
    found, start, token = [], None, None
    for line in log.read_text().splitlines():
        kind, stamp, *rest = line.split()
        if kind == "acq":
            start, token = float(stamp), int(rest[0])
        elif start is not None:
            found.append((start, float(stamp), token))
            start = None
    if start is not None:
        assert killed_at is not None, f"{log} stopped while holding but was not killed"
        found.append((start, killed_at, token))
    return found


@pytest.mark.real
@pytest.mark.slow
def test_capacity_is_never_exceeded_while_holders_are_killed(real_server, settings, tmp_path):
    settings.ATOMICOPS = {"URL": real_server.url, "LOAD_ON_STARTUP": False}
    stop_at = time.monotonic() + 3.0
    workers: dict[Path, tuple[multiprocessing.Process, float | None]] = {}

    def start(index: int) -> None:
        log = tmp_path / f"{index}.log"
        process = _ctx.Process(target=churn, args=(str(log), stop_at), daemon=True)
        process.start()
        workers[log] = (process, None)

    for index in range(2 * LIMIT):
        start(index)
    rng = random.Random(4)
    kills = 0
    next_index = 2 * LIMIT
    while time.monotonic() < stop_at - 1.0:
        time.sleep(0.15)
        alive = [log for log, (p, killed) in workers.items() if killed is None]
        victim = rng.choice(alive)
        process = workers[victim][0]
        os.kill(process.pid, signal.SIGKILL)
        process.join(5)
        workers[victim] = (process, time.monotonic())  # dead by now: a safe end
        kills += 1
        start(next_index)
        next_index += 1
    for process, _ in workers.values():
        process.join(15)
        assert not process.is_alive()
    events = []
    tokens = []
    for log, (_, killed_at) in workers.items():
        if not log.exists():
            continue
        for start_at, end_at, token in sections(log, killed_at):
            events += [(start_at, 1), (end_at, -1)]
            tokens.append(token)
    level = peak = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):  # ends before starts
        level += step
        peak = max(peak, level)
    assert kills >= 5
    assert peak == LIMIT, f"{peak} holders at once (limit {LIMIT})"
    assert len(tokens) == len(set(tokens))  # every grant had its own token
    # Holders kept getting slots after the kills: the killed ones' slots came back.
    assert len(tokens) > 20


def hold_forever(ready) -> None:
    sem = Semaphore("pool", LIMIT, ttl=TTL)
    assert sem.acquire(timeout=10)
    ready.put(sem.fencing_token)
    time.sleep(60)


@pytest.mark.real
@pytest.mark.slow
def test_slots_of_killed_holders_come_back_after_the_ttl(real_server, settings):
    settings.ATOMICOPS = {"URL": real_server.url, "LOAD_ON_STARTUP": False}
    ready = _ctx.Queue()
    processes = [
        _ctx.Process(target=hold_forever, args=(ready,), daemon=True) for _ in range(LIMIT)
    ]
    for process in processes:
        process.start()
    tokens = [ready.get(timeout=30) for _ in processes]
    for process in processes:
        os.kill(process.pid, signal.SIGKILL)
        process.join(5)
    sem = Semaphore("pool", LIMIT, ttl=10)
    assert sem.holders() == LIMIT  # the dead still hold their slots...
    assert sem.acquire(blocking=False) is False
    started = time.monotonic()
    assert sem.acquire(timeout=TTL + 5)  # ...until their leases end
    assert time.monotonic() - started < TTL + 2
    assert sem.fencing_token > max(tokens)
