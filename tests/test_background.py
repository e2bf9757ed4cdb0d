"""atomicops.engine.background: the scheduler that resumes renewals when due, and the
lanes (a thread per server) that make their round trips."""

from __future__ import annotations

import logging
import multiprocessing
import socket
import threading
import time

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from atomicops import Lock
from atomicops.engine import background, wire
from atomicops.engine.ops import Context, Pause, Send
from atomicops.exceptions import RedisUnavailable
from atomicops.leases import claims
from tests.multiproc import run_processes


def wait_until(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def background_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "atomicops-background"]


def pauses(steps: int, seconds: float, seen: list):
    """A flow that pauses ``steps`` times and notes which thread resumed it, and when."""
    for _ in range(steps):
        yield Pause(seconds)
        seen.append((threading.get_ident(), time.monotonic()))


def test_many_flows_share_one_scheduler_thread_and_each_resumes_when_due():
    seen: list[list] = [[] for _ in range(300)]
    started = time.monotonic()
    jobs = [
        background.start(pauses(3, 0.02 + (i % 10) * 0.01, seen[i]), f"test {i}")
        for i in range(300)
    ]
    assert wait_until(lambda: all(job.done for job in jobs), timeout=20)
    threads = {ident for steps in seen for ident, _ in steps}
    assert len(threads) == 1 and threading.get_ident() not in threads
    assert len(background_threads()) == 1
    for i, steps in enumerate(seen):
        assert len(steps) == 3
        # never resumed before its pauses were over
        assert steps[-1][1] - started >= 3 * (0.02 + (i % 10) * 0.01) - 0.001


def test_a_short_pause_started_later_is_not_kept_behind_a_long_one():
    long_seen: list = []
    short_seen: list = []
    # Longer than threading's TIMEOUT_MAX: the thread must neither die nor sleep it out.
    long_job = background.start(pauses(1, 1e12, long_seen), "test long")
    time.sleep(0.1)  # the thread now sleeps until the long pause ends
    started = time.monotonic()
    background.start(pauses(1, 0.05, short_seen), "test short")
    assert wait_until(lambda: short_seen, timeout=5)
    assert short_seen[0][1] - started < 2  # the thread was woken, not left asleep
    long_job.stop()
    assert long_seen == []


def test_stop_closes_a_paused_flow_at_once():
    closed = threading.Event()

    def flow():
        try:
            yield Pause(60)
            pytest.fail("a stopped flow must not be resumed")
        finally:
            closed.set()

    job = background.start(flow(), "test stop")
    assert job in background.runner.jobs() and not job.done
    job.stop()
    assert closed.is_set() and job.done  # no wait: closed in the stopping thread
    assert job not in background.runner.jobs()
    job.stop()  # a second stop is harmless


def test_a_reply_read_after_stop_never_reaches_the_flow(monkeypatch):
    sending, release = threading.Event(), threading.Event()
    got: list = []
    closed = threading.Event()

    def roundtrip(send):
        sending.set()
        assert release.wait(5)
        return ["reply"]

    monkeypatch.setattr(wire, "roundtrip", roundtrip)

    def flow():
        try:
            yield Pause(0)
            got.append((yield Send(None, [("PING",)], Context("PING", script=False))))
        finally:
            closed.set()

    job = background.start(flow(), "test in flight")
    assert sending.wait(5)
    job.stop()
    assert not job.done  # mid round trip: the thread closes it when the reply is back
    release.set()
    assert closed.wait(5) and job.done
    assert got == []


def test_a_wire_error_is_thrown_into_the_flow(monkeypatch):
    def roundtrip(send):
        raise RedisUnavailable("Redis unreachable")

    monkeypatch.setattr(wire, "roundtrip", roundtrip)
    caught: list = []

    def flow():
        try:
            yield Send(None, [("PING",)], Context("PING", script=False))
        except RedisUnavailable as exc:
            caught.append(exc)

    job = background.start(flow(), "test error")
    assert wait_until(lambda: job.done)
    assert len(caught) == 1


def test_a_failing_flow_is_logged_and_the_thread_goes_on(caplog):
    def broken():
        yield Pause(0)
        raise ValueError("a bug in a flow")

    seen: list = []
    with caplog.at_level(logging.ERROR, logger="atomicops"):
        job = background.start(broken(), "test broken")
        assert wait_until(lambda: job.done)
        later = background.start(pauses(1, 0, seen), "test after")
        assert wait_until(lambda: later.done)
    assert seen and "test broken" in caplog.text


def _in_child(results) -> None:
    try:
        inherited = background.runner.jobs()
        seen: list = []
        job = background.start(pauses(2, 0.02, seen), "child job")
        ok = wait_until(lambda: job.done, timeout=10)
        results.put(
            {
                "inherited": len(inherited),
                "done": ok,
                "threads": len(background_threads()),
                "ran_on_own_thread": bool(seen) and seen[0][0] != threading.get_ident(),
            }
        )
    except BaseException as exc:  # report it: the parent asserts
        results.put({"error": repr(exc)})


def test_a_forked_child_runs_its_own_thread_and_none_of_the_parents_flows():
    parent_seen: list = []
    parent_job = background.start(pauses(1, 60, parent_seen), "parent job")
    assert background_threads()
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    child = ctx.Process(target=_in_child, args=(results,))
    child.start()
    try:
        outcome = results.get(timeout=30)
    finally:
        child.join(10)
    assert outcome == {"inherited": 0, "done": True, "threads": 1, "ran_on_own_thread": True}
    assert not parent_job.done  # the parent's own flow is untouched
    parent_job.stop()


# -- renewals on a real server ------------------------------------------------------------


def test_renewal_keeps_many_leases_past_their_ttl_while_the_holder_sleeps(real_client):
    locks = [Lock(f"held:{i}", ttl=0.9, auto_renew=True) for i in range(40)]
    for lock in locks:
        assert lock.acquire(blocking=False)
    claim_key = "claim"
    real_client.hset(claim_key, "owner", "me")
    real_client.pexpire(claim_key, 900)
    held = claims.hold(claim_key, "me", 900)
    time.sleep(2.5)  # the holder does nothing: almost three leases long
    assert len(background_threads()) == 1
    for lock in locks:
        assert real_client.pttl(lock.key) > 0 and not lock.lost and lock.renewals >= 4
    assert real_client.pttl(claim_key) > 0 and not held.lost
    held.stop()
    for lock in locks:
        lock.release()


def test_a_stopped_renewal_extends_no_more_and_the_lease_runs_out(real_client):
    lock = Lock("stopped", ttl=1, auto_renew=True, renew_fraction=0.2)
    lock.acquire()
    assert wait_until(lambda: lock.renewals >= 2)
    (job,) = [job for job in background.runner.jobs() if job.name.endswith(lock.log_name)]
    job.stop()  # as release() does, without releasing: only the TTL can end it now
    stopped = time.monotonic()
    assert wait_until(lambda: job.done)  # an extend in flight at stop() has come back
    renewals = lock.renewals
    last = real_client.pttl(lock.key)
    while real_client.exists(lock.key):
        assert time.monotonic() - stopped < 1.5, "the lease outlived its TTL"
        ttl = real_client.pttl(lock.key)
        assert ttl <= last, "the lease was extended after its renewal stopped"
        last = ttl
        time.sleep(0.01)
    assert lock.renewals == renewals

    real_client.hset("claim", "owner", "me")
    real_client.pexpire("claim", 600)
    held = claims.hold("claim", "me", 600)
    time.sleep(0.7)  # renewed every 0.2 s: without them it would be gone by now
    assert real_client.pttl("claim") > 200 and not held.lost
    held.stop()
    stopped = time.monotonic()
    assert held._job is not None and wait_until(lambda: held._job.done)
    last = real_client.pttl("claim")
    while real_client.exists("claim"):
        assert time.monotonic() - stopped < 1.0, "the claim outlived its lease"
        ttl = real_client.pttl("claim")
        assert ttl <= last, "the claim was extended after its renewal stopped"
        last = ttl
        time.sleep(0.01)


def silent_server() -> socket.socket:
    """A server that accepts connections and never answers: a round trip to it lasts
    its client's whole socket timeout."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    return silent


def stuck_renewals(target, attempts: list):
    while True:
        attempts.append(time.monotonic())
        try:
            yield Send(target, [("PING",)], Context("PING", script=False))
        except RedisUnavailable:
            pass
        yield Pause(0.1)


def test_renewals_stuck_on_a_silent_server_do_not_hold_up_the_others(real_client):
    silent = silent_server()
    # Without redis-py's retry, as atomicops builds its clients: with its default one
    # (three retries, backoff up to 10 s) each round trip here would take about 8 s.
    stuck = redis.Redis(port=silent.getsockname()[1], socket_timeout=1.5,
                        socket_connect_timeout=1.5, retry=Retry(NoBackoff(), 0))  # fmt: skip
    attempts: list = []
    # Renewed every 0.5 s with 1 s in hand. Behind three round trips stuck 1.5 s each,
    # on one shared thread, they would run out; the silent server has a lane of its own.
    locks = [Lock(f"margin:{i}", ttl=1.5, auto_renew=True) for i in range(5)]
    dead = [background.start(stuck_renewals(stuck, attempts), "test silent") for _ in range(3)]
    try:
        for lock in locks:
            assert lock.acquire(blocking=False)
        time.sleep(3.5)
        assert len(attempts) >= 4  # the silent server's lane was busy all along
        assert any(target is stuck for target in background.runner.lanes())
        for lock in locks:
            assert real_client.pttl(lock.key) > 0 and not lock.lost and lock.renewals >= 5
    finally:
        for job in dead:
            job.stop()
        for lock in locks:
            lock.release()
        stuck.close()
        silent.close()


def test_an_idle_lane_ends(real_client, monkeypatch):
    monkeypatch.setattr(background, "LANE_IDLE", 0.2)
    client = redis.Redis(port=real_client.connection_pool.connection_kwargs["port"])
    replies: list = []

    def one_round_trip():
        replies.append((yield Send(client, [("PING",)], Context("PING", script=False))))

    job = background.start(one_round_trip(), "test idle lane")
    assert wait_until(lambda: job.done)
    assert replies == [[True]]
    assert wait_until(lambda: not any(t is client for t in background.runner.lanes()), 3)
    client.close()


PROCESSES = 4
LOCKS_EACH = 10


def _hold_while_sleeping(index: int) -> dict:
    """Hold this process's locks (renewed, TTL 0.6 s) and sleep; meanwhile try to take
    the next process's locks, which its renewals must keep from us."""
    locks = [Lock(f"p{index}:{i}", ttl=0.6, auto_renew=True) for i in range(LOCKS_EACH)]
    for lock in locks:
        assert lock.acquire(blocking=False)
    time.sleep(1.2)  # two TTLs: only renewals keep them now
    neighbour = (index + 1) % PROCESSES
    taken = sum(
        Lock(f"p{neighbour}:{i}", ttl=10).acquire(blocking=False) for i in range(LOCKS_EACH)
    )
    time.sleep(0.6)
    outcome = {
        "owned": sum(lock.owned() and not lock.lost for lock in locks),
        "fewest_renewals": min(lock.renewals for lock in locks),
        "neighbours_taken": taken,
        "threads": len(background_threads()),
    }
    for lock in locks:
        lock.release()
    return outcome


def test_each_process_renews_its_own_leases_on_its_own_thread(real_client):
    parent = Lock("parent", ttl=30, auto_renew=True)  # the parent's runner has a job to fork
    parent.acquire()
    try:
        outcomes = run_processes(_hold_while_sleeping, [(n,) for n in range(PROCESSES)])
    finally:
        parent.release()
    for outcome in outcomes:
        assert outcome["owned"] == LOCKS_EACH and outcome["neighbours_taken"] == 0
        assert outcome["fewest_renewals"] >= 3 and outcome["threads"] == 1
