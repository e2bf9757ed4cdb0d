"""Lock under real concurrency: several processes against a real server (redis and valkey).

Each process notes when its critical section ran with ``time.monotonic()``, which on
Linux is one clock for every process of the machine. A section is noted after
``acquire()`` returned and before ``release()`` is sent, so it lies inside the time the
server granted the lock: if the lock ever let two holders in, their notes overlap.
"""

from __future__ import annotations

import fcntl
import json
import multiprocessing
import os
import signal
import time

import pytest
import redis

from atomicops import Lock, LockNotOwned
from tests.multiproc import run_processes

pytestmark = [pytest.mark.real, pytest.mark.slow]

PROCESSES = 8
ROUNDS = 25


class FencedResource:
    """A toy storage service: remembers the highest fencing token it has seen and
    refuses a write that carries an older one. A file guarded by ``flock``, so it is
    shared by processes and knows nothing about Redis."""

    def __init__(self, path: str) -> None:
        self.path = path

    def write(self, token: int, value: str) -> bool:
        with open(self.path, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.seek(0)
            state = json.loads(handle.read() or '{"token": 0, "values": []}')
            if token < state["token"]:
                return False
            state["token"] = token
            state["values"].append(value)
            handle.seek(0)
            handle.truncate()
            json.dump(state, handle)
            return True

    def read(self) -> dict:
        with open(self.path) as handle:
            fcntl.flock(handle, fcntl.LOCK_SH)
            return json.load(handle)


def contend(url: str, rounds: int, resource_path: str) -> list[tuple[float, float, int, bool]]:
    """Take the lock ``rounds`` times; inside, a read-modify-write that only the lock
    makes safe, and a fenced write. Returns (start, end, token, write accepted)."""
    plain = redis.Redis.from_url(url)
    resource = FencedResource(resource_path)
    sections = []
    for _ in range(rounds):
        lock = Lock("shared", ttl=30)
        assert lock.acquire(timeout=60)
        start = time.monotonic()
        value = int(plain.get("unprotected") or 0)
        time.sleep(0.0005)  # widen the read-modify-write window
        plain.set("unprotected", value + 1)
        accepted = resource.write(lock.fencing_token, f"{os.getpid()}")
        end = time.monotonic()
        lock.release()
        sections.append((start, end, lock.fencing_token, accepted))
    plain.close()
    return sections


def test_no_two_holders_overlap_and_tokens_follow_the_order(real_client, real_server, tmp_path):
    path = str(tmp_path / "resource.json")
    results = run_processes(contend, [(real_server.url, ROUNDS, path)] * PROCESSES)
    sections = sorted(s for worker in results for s in worker)
    assert len(sections) == PROCESSES * ROUNDS
    for before, after in zip(sections, sections[1:], strict=False):
        assert before[1] <= after[0], f"critical sections overlap: {before} and {after}"
        assert before[2] < after[2], f"fencing tokens out of order: {before} then {after}"
    assert all(accepted for *_, accepted in sections)
    assert int(real_client.get("unprotected")) == PROCESSES * ROUNDS
    assert len(FencedResource(path).read()["values"]) == PROCESSES * ROUNDS


def paused_holder(ttl: float, resource_path: str, ready, resume, results) -> None:
    """Hold the lock (with auto-renewal), get paused by the parent, then carry on."""
    lock = Lock("shared", ttl=ttl, auto_renew=True)
    assert lock.acquire(timeout=10)
    ready.put(lock.fencing_token)
    resume.wait(60)  # SIGSTOP lands while we wait here, holding the lock
    outcome: dict = {"token": lock.fencing_token}
    # The stale holder writes anyway: the resource is what must refuse it.
    outcome["write"] = FencedResource(resource_path).write(lock.fencing_token, "stale holder")
    try:
        lock.ensure_owned()
        outcome["ensure"] = "owned"
    except LockNotOwned:
        outcome["ensure"] = "LockNotOwned"
    try:
        lock.release()
        outcome["release"] = "released"
    except LockNotOwned:
        outcome["release"] = "LockNotOwned"
    outcome["lost"] = lock.lost
    results.put(outcome)


def test_a_holder_paused_past_its_ttl_is_fenced_off(real_client, real_server, tmp_path):
    ttl = 0.5
    resource = FencedResource(str(tmp_path / "resource.json"))
    ctx = multiprocessing.get_context("fork")
    ready, results, resume = ctx.Queue(), ctx.Queue(), ctx.Event()
    process = ctx.Process(
        target=paused_holder, args=(ttl, resource.path, ready, resume, results), daemon=True
    )
    process.start()
    try:
        old_token = ready.get(timeout=30)
        os.kill(process.pid, signal.SIGSTOP)  # a long GC pause, a VM freeze...
        time.sleep(ttl + 0.5)  # its renewer is frozen too: the lease runs out
        taker = Lock("shared", ttl=30)
        assert taker.acquire(timeout=10)
        assert taker.fencing_token > old_token
        assert resource.write(taker.fencing_token, "new holder")
        holder_value = real_client.hgetall(taker.key)
        os.kill(process.pid, signal.SIGCONT)
        resume.set()
        outcome = results.get(timeout=30)
    finally:
        os.kill(process.pid, signal.SIGCONT)
        process.join(10)
        if process.is_alive():
            process.kill()
    assert outcome["write"] is False  # the resource refused the stale token
    assert outcome["ensure"] == "LockNotOwned"
    assert outcome["release"] == "LockNotOwned"
    assert outcome["lost"] is True
    assert resource.read()["values"] == ["new holder"]
    # The stale holder's release (and renewals) left the new holder's lock alone.
    assert real_client.hgetall(taker.key) == holder_value
    assert taker.owned()
    taker.release()
