"""Multi-process scenarios of FairLock, ReadWriteLock and MultiLock, on whatever server
atomicops is configured for: tests/test_lock_kinds_concurrency.py runs them on redis and
valkey, tests/cluster/test_primitives.py on the 3+3 cluster.

Children are forked (tests/multiproc.py) and note times with ``time.monotonic()``, one
clock for every process of the machine. Bookkeeping (the order of grants, balances) goes
to plain keys through atomicops' configured client, so it works on a cluster too.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import threading
import time
from typing import Any

from atomicops import FairLock, MultiLock, ReadWriteLock, connection
from atomicops import fairlock as fairlock_module
from tests.multiproc import Workers, run_processes

_ctx = multiprocessing.get_context("fork")

WAITERS = 6


def _client() -> Any:
    return connection.get_client()


def _joined(client: Any, lock: FairLock, served: str) -> int:
    """Waiters that joined the line so far: in it now, or already served."""
    return int(client.zcard(f"{lock.key}:queue")) + int(client.get(served) or 0)


def _fifo_waiter(name: str, index: int, order: str, served: str) -> float:
    client = _client()
    lock = FairLock(name, ttl=10, timeout=60)
    # Join only after the previous waiter has: the order they began waiting is 0..5.
    deadline = time.monotonic() + 60
    while _joined(client, lock, served) < index:
        if time.monotonic() > deadline:
            raise AssertionError(f"waiter {index - 1} never joined the line")
        time.sleep(0.02)
    with lock:
        client.incr(served)
        client.rpush(order, index)
        time.sleep(0.05)
    return time.monotonic()


def _die_holding(name: str, ttl: float, held: Any) -> None:
    lock = FairLock(name, ttl=ttl)
    lock.acquire()
    held.set()
    os._exit(0)  # no release: the lease lapses


def fifo(name: str, *, lapse: bool) -> None:
    """6 staggered waiter processes are granted the lock in the order they began waiting,
    after a release, or after the holder died and its lease lapsed unreleased."""
    client = _client()
    order, served = f"test:{name}:order", f"test:{name}:served"
    holder = FairLock(name, ttl=10)
    if lapse:
        held = _ctx.Event()
        dying = _ctx.Process(target=_die_holding, args=(name, 4, held), daemon=True)
        dying.start()
        assert held.wait(30)
        dying.join(30)
    else:
        assert holder.acquire(blocking=False)

        def release_once_all_wait() -> None:
            deadline = time.monotonic() + 60
            while client.zcard(f"{holder.key}:queue") < WAITERS:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.02)
            holder.release()

        releaser = threading.Thread(target=release_once_all_wait, daemon=True)
        releaser.start()
    run_processes(
        _fifo_waiter, [(name, index, order, served) for index in range(WAITERS)], timeout=120
    )
    assert [int(i) for i in client.lrange(order, 0, -1)] == list(range(WAITERS))


def _dead_waiter(name: str) -> None:
    FairLock(name, ttl=10).acquire(timeout=120)  # killed while it waits


def _live_waiter(name: str, granted: Any) -> None:
    with FairLock(name, ttl=10, timeout=60):
        granted.put(time.monotonic())


def dead_waiter_skipped(name: str) -> float:
    """A waiter that dies while first in line delays the next one by at most the stated
    bound (BEAT_S + DEAD_S after its death). Returns the delay measured."""
    client = _client()
    holder = FairLock(name, ttl=30)
    assert holder.acquire(blocking=False)
    queue = f"{holder.key}:queue"
    granted = _ctx.Queue()
    dead = _ctx.Process(target=_dead_waiter, args=(name,), daemon=True)
    live = _ctx.Process(target=_live_waiter, args=(name, granted), daemon=True)
    try:
        dead.start()
        _wait_for(lambda: client.zcard(queue) == 1, "the first waiter to join")
        live.start()
        _wait_for(lambda: client.zcard(queue) == 2, "the second waiter to join")
        os.kill(dead.pid, signal.SIGKILL)
        died = time.monotonic()
        dead.join(10)
        holder.release()
        delay = granted.get(timeout=60) - died
    finally:
        for process in (dead, live):
            process.join(10)
            if process.is_alive():
                process.kill()
    bound = fairlock_module.BEAT_S + fairlock_module.DEAD_S
    # Slack for a loaded 2-core machine: the bound is about the server's clock and the
    # waiter's next attempt, not about how fast a starved process gets scheduled.
    assert 0 < delay <= bound + 2.5, f"the live waiter waited {delay:.2f}s after the death"
    return delay


def _wait_for(condition: Any, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _rw_worker(name: str, kind: str, rounds: int, hold: float, delay: float) -> list[tuple]:
    rw = ReadWriteLock(name, ttl=10)
    time.sleep(delay)
    notes = []
    for _ in range(rounds):
        lease = rw.read(timeout=60) if kind == "read" else rw.write(timeout=60)
        with lease:
            start = time.monotonic()
            time.sleep(hold)
            notes.append((kind, start, time.monotonic(), lease.fencing_token))
        time.sleep(random.uniform(0, 0.05))
    return notes


def readers_share_writers_exclude(name: str) -> None:
    """4 reader processes overlap; 2 writer processes overlap nobody; write tokens are
    above every token handed out before them."""
    args = [(name, "read", 3, 0.8, 0.0) for _ in range(4)]
    args += [(name, "write", 3, 0.05, 0.4) for _ in range(2)]
    notes = [note for worker in run_processes(_rw_worker, args, timeout=120) for note in worker]
    reads = [n for n in notes if n[0] == "read"]
    writes = [n for n in notes if n[0] == "write"]
    assert len(reads) == 12 and len(writes) == 6
    for write in writes:
        for other in notes:
            if other is not write:
                assert other[2] <= write[1] or write[2] <= other[1], (write, other)
        # one fence: the write's token is above the token of everything granted before it
        assert all(other[3] < write[3] for other in notes if other[1] < write[1])
    most = max(sum(1 for r in reads if r[1] <= read[1] < r[2]) for read in reads)
    assert most == 4, f"at most {most} readers held the lock together"


def _reader_stream(index: int, stop: Any, name: str) -> int:
    rw = ReadWriteLock(name, ttl=10)
    time.sleep(index * 0.04)  # staggered, so the reads overlap and never all end at once
    rounds = 0
    while not stop.is_set():
        with rw.read(timeout=30):
            time.sleep(0.15)
        rounds += 1
    return rounds


def writer_not_starved(name: str) -> list[float]:
    """Under a constant stream of readers (4 processes, each re-reading at once, so some
    reader always holds), a writer is served within 1.5 s. Returns its waits."""
    rw = ReadWriteLock(name, ttl=10)
    client = _client()
    waits = []
    streams = Workers(_reader_stream, [(name,)] * 4).start()
    try:
        _wait_for(lambda: int(client.hget(rw.key, "readers") or 0) >= 2, "readers")
        for _ in range(3):
            time.sleep(0.4)
            asked = time.monotonic()
            with rw.write(timeout=30):
                waits.append(time.monotonic() - asked)
    finally:
        rounds = streams.stop()
    assert all(r > 0 for r in rounds), rounds  # readers did stream meanwhile
    assert max(waits) <= 1.5, f"writer waits {waits}"
    return waits


ACCOUNTS = 5
START = 1000


def _transfers(prefix: str, count: int, seed: int) -> int:
    client = _client()
    rng = random.Random(seed)
    for _ in range(count):
        a, b = rng.sample(range(ACCOUNTS), 2)
        names = [f"{prefix}:acct:{a}", f"{prefix}:acct:{b}"]
        rng.shuffle(names)
        amount = rng.randint(1, 50)
        with MultiLock(names, ttl=10, timeout=60) as m:
            assert set(m.fencing_tokens) == set(names)
            # A read-modify-write that only the lock makes safe.
            source = int(client.get(f"test:{prefix}:bal:{a}"))
            target = int(client.get(f"test:{prefix}:bal:{b}"))
            time.sleep(rng.uniform(0, 0.005))
            client.set(f"test:{prefix}:bal:{a}", source - amount)
            client.set(f"test:{prefix}:bal:{b}", target + amount)
    return count


def transfers_conserve_the_total(prefix: str, processes: int = 6, total: int = 240) -> None:
    """6 processes doing 240 random two-account transfers under MultiLock, names in random
    order: all finish (no deadlock), and the sum of the balances is unchanged."""
    client = _client()
    for account in range(ACCOUNTS):
        client.set(f"test:{prefix}:bal:{account}", START)
    per = total // processes
    done = run_processes(_transfers, [(prefix, per, seed) for seed in range(processes)], 180)
    assert sum(done) == total
    balances = [int(client.get(f"test:{prefix}:bal:{a}")) for a in range(ACCOUNTS)]
    assert sum(balances) == ACCOUNTS * START, balances
    assert balances != [START] * ACCOUNTS  # money did move
