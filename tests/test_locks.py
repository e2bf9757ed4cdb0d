"""Lock: owner and fencing tokens, non-owner release/extend, blocking, renewal, async, listing.

Every test here runs on redis, valkey and fakeredis (``backend``) unless it says why not.
Multi-process proofs are in test_locks_concurrency.py.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import weakref
from typing import Any

import pytest
import redis
import redis.asyncio
from redis.cluster import RedisCluster

from atomicops import (
    AtomicOpsError,
    ConfigurationError,
    DataError,
    InvalidInput,
    Lock,
    LockError,
    LockInfo,
    LockNotAcquired,
    LockNotOwned,
    OutcomeUnknown,
    Semaphore,
    list_locks,
    locked,
    registry,
)
from atomicops.engine import background, wire
from atomicops.leases import lease
from atomicops.leases.locks import lock_key
from tests.factories import ArticleFactory
from tests.test_cluster import cluster_server  # noqa: F401  (a fixture: one-node clusters)


def snapshot(client: redis.Redis, lock: Lock) -> tuple[dict, int]:
    return client.hgetall(lock.key), client.pttl(lock.key)


def take_over(client: redis.Redis, lock: Lock, ttl: float = 100) -> Lock:
    """What happens when ``lock``'s lease runs out and another owner takes it."""
    client.delete(lock.key)
    other = Lock(lock.name, ttl)
    assert other.acquire(blocking=False)
    return other


def commands(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): v["calls"] for name, v in stats.items()}


# -- acquire, release, fencing tokens ----------------------------------------------


def test_acquire_release_and_fencing_tokens_increase_across_objects(backend):
    kind, client = backend
    tokens = []
    for _ in range(3):
        lock = Lock("report", ttl=10)
        assert lock.acquire() is True
        assert isinstance(lock.fencing_token, int)
        tokens.append(lock.fencing_token)
        assert client.hget(lock.key, "token") == str(lock.fencing_token).encode()
        lock.release()
        assert client.exists(lock.key) == 0
    assert tokens == sorted(set(tokens)) and len(tokens) == 3


def test_key_layout_shares_one_hash_tag(backend):
    lock = Lock("report", ttl=10)
    assert lock.key == "atomicops:lock:{report}"
    lock.acquire()
    _, client = backend
    assert int(client.get("atomicops:lock:{report}:fence")) == lock.fencing_token
    assert client.pttl(lock.key) > 9000
    assert set(client.hgetall(lock.key)) == {b"owner", b"token"}  # nobody waits: no w
    lock.release()
    # Nobody asked to be woken, so the release pushed nothing.
    assert client.exists("atomicops:lock:{report}:wake") == 0


def test_context_manager_holds_and_releases(backend):
    _, client = backend
    with Lock("report", ttl=10) as lock:
        assert lock.held and client.exists(lock.key)
        assert Lock("report", ttl=10).acquire(blocking=False) is False
    assert not client.exists("atomicops:lock:{report}")


def test_context_manager_raises_on_enter_when_it_cannot_acquire(backend):
    holder = Lock("report", ttl=10)
    holder.acquire()
    entered = False
    with pytest.raises(LockNotAcquired, match="held by another owner") as info:
        with Lock("report", ttl=10, timeout=0):
            entered = True
    assert not entered
    assert info.value.key == "atomicops:lock:{report}"
    assert isinstance(info.value, LockError) and isinstance(info.value, AtomicOpsError)


def test_non_blocking_acquire_does_not_wait(backend):
    Lock("report", ttl=10).acquire()
    started = time.monotonic()
    assert Lock("report", ttl=10).acquire(blocking=False) is False
    assert time.monotonic() - started < 1


def test_a_lock_object_is_not_reentrant(backend):
    lock = Lock("report", ttl=10)
    lock.acquire()
    with pytest.raises(LockError, match="not re-entrant"):
        lock.acquire()
    lock.release()
    assert lock.acquire(blocking=False)


def test_model_instance_pair_names_a_lock(backend, db):
    article = ArticleFactory()
    lock = Lock((article, "publish"), ttl=10)
    assert lock.key == f"atomicops:lock:{{testapp.article:{article.pk}:publish}}"
    with lock:
        [info] = list_locks()
    assert info.name == f"testapp.article:{article.pk}:publish"


# -- non-owners change nothing -------------------------------------------------------


def test_release_after_takeover_raises_and_changes_nothing(backend):
    _, client = backend
    old = Lock("report", ttl=10)
    old.acquire()
    new = take_over(client, old, ttl=100)
    before = snapshot(client, new)
    with pytest.raises(LockNotOwned, match="nothing was changed") as info:
        old.release()
    assert info.value.key == old.key and info.value.script == "lock_release"
    value, pttl = snapshot(client, new)
    assert value == before[0] and value[b"owner"] != b"" and 0 < pttl <= before[1]
    assert new.owned()


def test_extend_after_takeover_raises_and_changes_neither_value_nor_ttl(backend):
    _, client = backend
    old = Lock("report", ttl=10)
    old.acquire()
    new = take_over(client, old, ttl=100)
    before = snapshot(client, new)
    with pytest.raises(LockNotOwned):
        old.extend(ttl=5000)  # had it applied, the TTL would jump to 5000 s
    value, pttl = snapshot(client, new)
    assert value == before[0]
    assert 0 < pttl <= before[1] <= 100_000
    assert old.lost and not old.held


def test_release_without_acquire_raises(backend):
    with pytest.raises(LockNotOwned, match="without a successful acquire"):
        Lock("report", ttl=10).release()


def test_release_after_real_expiry_raises(backend):
    lock = Lock("report", ttl=0.05)
    lock.acquire()
    time.sleep(0.15)
    assert lock.lost  # by this process's clock, without asking the server
    other = Lock("report", ttl=10)
    assert other.acquire(blocking=False)
    with pytest.raises(LockNotOwned):
        lock.release()
    assert other.fencing_token > lock.fencing_token


def test_extend_resets_the_lease(backend):
    _, client = backend
    lock = Lock("report", ttl=10)
    lock.acquire()
    lock.extend(ttl=300)
    assert 290_000 < client.pttl(lock.key) <= 300_000
    lock.extend()
    assert 9_000 < client.pttl(lock.key) <= 10_000


def test_ensure_owned_raises_after_takeover_and_the_block_exit_adds_nothing(backend):
    _, client = backend
    with pytest.raises(LockNotOwned) as info:
        with Lock("report", ttl=10) as lock:
            assert lock.ensure_owned() == lock.fencing_token
            take_over(client, lock)
            lock.ensure_owned()
    # The block got its LockNotOwned; __exit__ did not raise a second one over it.
    assert info.value.script == "lock_check" and info.value.__context__ is None
    assert not lock.held


def test_ensure_owned_before_a_critical_write(backend):
    with Lock("report", ttl=10) as lock:
        assert lock.ensure_owned() == lock.fencing_token


def test_with_block_raises_on_exit_when_the_lease_was_lost_unnoticed(backend):
    _, client = backend
    with pytest.raises(LockNotOwned):
        with Lock("report", ttl=10) as lock:
            take_over(client, lock)


def test_locked_reports_any_holder(backend):
    lock = Lock("report", ttl=10)
    assert not lock.locked()
    Lock("report", ttl=10).acquire()
    assert lock.locked() and not lock.owned()


# -- bad input ------------------------------------------------------------------


@pytest.mark.parametrize("ttl", [0, -1, 0.0, -0.5, float("nan"), float("inf"), "10", None, True])
def test_bad_ttl_is_refused(ttl):
    with pytest.raises(InvalidInput, match="ttl") as info:
        Lock("report", ttl=ttl)
    assert info.value.key == "atomicops:lock:{report}"


@pytest.mark.parametrize("name", ["", None, 5, b"bytes", ("x", "y", "z")])
def test_bad_name_is_refused(name):
    with pytest.raises(InvalidInput, match="name"):
        Lock(name, ttl=10)


def test_unsaved_instance_is_refused(db):
    from tests.testapp.models import Article

    with pytest.raises(InvalidInput, match="unsaved"):
        Lock((Article(title="x"), "publish"), ttl=10)


def test_a_model_class_is_not_an_instance(db):
    # Its .pk is a property object whose repr differs per process: two processes
    # would each "hold" a lock of their own.
    from tests.testapp.models import Article

    with pytest.raises(InvalidInput, match="the class Article"):
        Lock((Article, "publish"), ttl=10)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"timeout": -1},
        {"timeout": "soon"},
        {"auto_renew": "yes"},
        {"renew_fraction": 1},
        {"renew_fraction": 0},
        {"max_renewals": -1},
        {"on_lost": 5},
    ],
)
def test_bad_options_are_refused(kwargs):
    with pytest.raises(InvalidInput):
        Lock("report", ttl=10, **kwargs)


def test_bad_acquire_arguments_are_refused_before_anything_is_sent(backend):
    _, client = backend
    lock = Lock("report", ttl=10)
    with pytest.raises(InvalidInput, match="non-blocking"):
        lock.acquire(blocking=False, timeout=1)
    with pytest.raises(InvalidInput, match="timeout"):
        lock.acquire(timeout=-1)
    with pytest.raises(InvalidInput, match="blocking"):
        lock.acquire(blocking="no")
    assert lock.acquire()
    with pytest.raises(InvalidInput, match="ttl"):
        lock.extend(ttl=0)
    assert 9_000 < client.pttl(lock.key) <= 10_000


async def test_sync_and_async_clients_are_not_mixed_up(backend):
    kind, client = backend
    with pytest.raises(ConfigurationError, match="a-prefixed methods need"):
        await Lock("report", ttl=10, client=client).aacquire()
    if kind == "fakeredis":
        import fakeredis

        async_client = fakeredis.FakeAsyncRedis()
    else:  # the suite's own server, never a default port
        async_client = redis.asyncio.Redis(port=client.connection_pool.connection_kwargs["port"])
    with pytest.raises(ConfigurationError, match="asyncio client"):
        Lock("report", ttl=10, client=async_client).acquire()
    await async_client.aclose()
    assert not client.exists("atomicops:lock:{report}")


def test_the_scripts_validate_too(backend):
    with pytest.raises(InvalidInput, match="ttl_ms"):
        registry.get("lock_acquire")(keys=["a:{x}", "a:{x}:f"], args=["me", 0, 0])
    with pytest.raises(InvalidInput, match="wait"):
        registry.get("lock_acquire")(keys=["a:{x}", "a:{x}:f"], args=["me", 10, 3])
    with pytest.raises(InvalidInput, match="ttl_ms"):
        registry.get("lock_extend")(keys=["a:{x}"], args=["me", "1.5"])


def test_a_foreign_value_at_the_lock_key_is_a_typed_error(backend):
    _, client = backend
    client.set("atomicops:lock:{report}", "not a hash")
    with pytest.raises(DataError) as info:
        Lock("report", ttl=10).acquire()
    assert info.value.key == "atomicops:lock:{report}"


# -- blocking: woken by release, bounded by the holder's lease and the timeout -------


class Waits:
    """The BLPOPs of blocked waiters (sync and async): each reply, None when it timed out.

    One flow (:func:`atomicops.leases.lease.wake_wait`) serves both, so one patch sees both."""

    def __init__(self) -> None:
        self.replies: list[Any] = []
        self.started = threading.Event()  # a waiter was refused and is about to block

    def woken_by_release(self) -> bool:
        # Only a release pushes to the wake-up list; the waiter's last wait ended on
        # that token, not on its own timeout or the holder's lease running out.
        return bool(self.replies) and self.replies[-1] is not None


@pytest.fixture
def waits(monkeypatch) -> Waits:
    log = Waits()
    real = lease.wake_wait

    def wake_wait(client, key, seconds):
        log.started.set()
        log.replies.append(reply := (yield from real(client, key, seconds)))
        return reply

    monkeypatch.setattr(lease, "wake_wait", wake_wait)
    return log


def release_later(
    lease: Lock | Semaphore, delay: float, after: threading.Event | None = None
) -> tuple[threading.Thread, list[float]]:
    """Release ``lease`` from a thread ``delay`` s after ``after`` is set (or now).

    The list gets the time release() was called. Waiting for a waiter to block first
    keeps the test from depending on which thread a loaded machine runs first.
    """
    began: list[float] = []

    def run() -> None:
        if after is not None:
            assert after.wait(30)
        time.sleep(delay)
        began.append(time.monotonic())
        lease.release()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, began


def arelease_later(
    lease: Lock | Semaphore, delay: float, after: threading.Event
) -> tuple[asyncio.Task, list[float]]:
    """The asyncio twin of :func:`release_later`."""
    began: list[float] = []

    async def run() -> None:
        while not after.is_set():
            await asyncio.sleep(0.01)
        await asyncio.sleep(delay)
        began.append(time.monotonic())
        await lease.arelease()

    return asyncio.create_task(run()), began


def test_a_blocked_waiter_wakes_on_release(backend, waits):
    holder = Lock("report", ttl=60)  # expiry cannot be what wakes the waiter
    holder.acquire()
    thread, began = release_later(holder, 0.2, after=waits.started)
    waiter = Lock("report", ttl=10)
    assert waiter.acquire(timeout=20)
    acquired = time.monotonic()
    thread.join()
    assert waits.woken_by_release() and began[0] < acquired
    assert waiter.fencing_token > holder.fencing_token


def test_waiting_does_not_poll(real_client):
    holder = Lock("report", ttl=60)
    holder.acquire()
    before = commands(real_client)
    thread, _ = release_later(holder, 1.0)
    assert Lock("report", ttl=10).acquire(timeout=20)
    thread.join()
    after = commands(real_client)
    # One refused attempt, one BLPOP woken by the release, one granted attempt.
    evals = after.get("evalsha", 0) - before.get("evalsha", 0)
    assert evals <= 3 + 1  # + the release
    assert after.get("blpop", 0) - before.get("blpop", 0) <= 2


def test_timeout_is_honoured(backend):
    Lock("report", ttl=60).acquire()
    started = time.monotonic()
    assert Lock("report", ttl=10).acquire(timeout=0.3) is False
    waited = time.monotonic() - started
    # Ignoring the timeout would mean a BLPOP of 4 s (80% of the 5 s socket timeout)
    # or the holder's 60 s: 3 s leaves a loaded machine room without hiding either.
    assert 0.3 <= waited < 3


def test_a_waiter_takes_over_when_the_holder_s_lease_runs_out(backend):
    crashed = Lock("report", ttl=0.3)  # never released, like a crashed process
    crashed.acquire()
    started = time.monotonic()
    waiter = Lock("report", ttl=10)
    assert waiter.acquire(timeout=10)
    assert time.monotonic() - started < 3
    assert waiter.fencing_token > crashed.fencing_token


def test_a_release_with_nobody_waiting_leaves_no_wake_up_token(backend):
    _, client = backend
    first = Lock("report", ttl=10)
    first.acquire()
    assert Lock("report", ttl=10).acquire(blocking=False) is False  # refused, will not wait
    first.release()
    assert client.exists("atomicops:lock:{report}:wake") == 0
    second = Lock("report", ttl=10)
    second.acquire()
    assert client.exists("atomicops:lock:{report}:wake") == 0


def test_a_refused_blocking_caller_asks_the_holder_to_wake_it(backend):
    _, client = backend
    holder = Lock("report", ttl=10)
    holder.acquire()
    assert Lock("report", ttl=10).acquire(timeout=0.05) is False
    assert client.hget(holder.key, "w") == b"1"
    holder.release()
    assert client.lrange("atomicops:lock:{report}:wake", 0, -1) == [b"1"]
    assert 0 < client.pttl("atomicops:lock:{report}:wake") <= 10_000


def test_two_waiters_both_get_the_lock_one_release_each(backend):
    # The first woken waiter takes the lock without knowing whether others wait: its
    # grant keeps the wake-up flag so that its release wakes the second one.
    holder = Lock("report", ttl=60)  # expiry cannot be what wakes them
    holder.acquire()
    order: list[str] = []

    def wait(name: str) -> None:
        lock = Lock("report", ttl=60)
        assert lock.acquire(timeout=20)
        order.append(name)
        time.sleep(0.05)
        lock.release()

    threads = [threading.Thread(target=wait, args=(n,)) for n in ("a", "b")]
    for thread in threads:
        thread.start()
    time.sleep(0.3)  # both refused and blocked
    started = time.monotonic()
    holder.release()
    for thread in threads:
        thread.join(30)
    assert sorted(order) == ["a", "b"]
    # A missed wake-up would show as a 4 s BLPOP (80% of the 5 s socket timeout).
    assert time.monotonic() - started < 3


# -- a lost reply on acquire ------------------------------------------------------


@pytest.fixture
def lose_reply(monkeypatch):
    """Make the next call of a script run on the server but lose its reply."""
    real = wire.roundtrip
    armed: dict[str, bool] = {}

    def roundtrip(send):
        replies = real(send)
        if armed.pop(send.context.what, False):
            raise send.context.unknown(redis.ConnectionError("reply lost (simulated)"))
        return replies

    monkeypatch.setattr(wire, "roundtrip", roundtrip)
    return lambda script: armed.__setitem__(script, True)


def test_a_woken_waiter_cut_off_before_its_retry_still_wakes_the_next_one(
    backend, monkeypatch, settings
):
    """The woken waiter's next attempt never reaches the server: it still owes the other
    waiters their wake-up, and pays it when it does take the lock."""
    from atomicops.exceptions import RedisUnavailable

    # The cut-off attempt must reach the waiter: no retry sends it again.
    settings.ATOMICOPS = {**settings.ATOMICOPS, "RETRY_DEADLINE_MS": 0}

    real_roundtrip = wire.roundtrip
    cut = {"armed": True}
    first_done = threading.Event()

    def roundtrip(send):
        what, batch = send.context.what, send.commands
        # The first attempt made right after a wake-up (wait=2) is not sent.
        if what == "lock_acquire" and batch[-1][-1] == 2 and cut.pop("armed", False):
            raise send.context.unavailable(redis.ConnectionError("cut off (simulated)"))
        if what == "BLPOP" and threading.current_thread().name == "second":
            # The second waiter was refused (and set the flag) while the lock was held,
            # but blocks only once the first has taken the release's token: the order
            # is fixed.
            assert first_done.wait(30)
        return real_roundtrip(send)

    monkeypatch.setattr(wire, "roundtrip", roundtrip)
    holder = Lock("report", ttl=60)  # expiry cannot be what wakes anyone
    holder.acquire()
    first, second = Lock("report", ttl=60), Lock("report", ttl=60)
    outcome: dict[str, Any] = {}

    def wait_first() -> None:
        try:
            first.acquire(timeout=20)
        except RedisUnavailable as exc:
            outcome["first"] = exc
        finally:
            first_done.set()

    def wait_second() -> None:
        outcome["granted"] = second.acquire(timeout=20)
        outcome["at"] = time.monotonic()

    threads = [
        threading.Thread(target=wait_first, name="first"),
        threading.Thread(target=wait_second, name="second"),
    ]
    for thread in threads:
        thread.start()
    time.sleep(0.3)  # both refused; the first blocked on the wake-up list
    holder.release()
    threads[0].join(10)
    assert isinstance(outcome.get("first"), RedisUnavailable) and not cut
    time.sleep(0.2)  # the second blocks on the now empty list
    assert first.acquire(blocking=False)  # the lock is free; it takes it, owing a wake-up
    released = time.monotonic()
    first.release()
    threads[1].join(30)
    assert outcome["granted"]
    # Without the wake-up the second waiter would sleep 4 s (80% of the socket timeout).
    assert outcome["at"] - released < 3


def test_a_zero_timeout_does_not_ask_to_be_woken(backend):
    _, client = backend
    holder = Lock("report", ttl=10)
    holder.acquire()
    assert Lock("report", ttl=10).acquire(timeout=0) is False
    assert client.hget(holder.key, "w") is None  # it will not wait: no wake-up to pay for
    holder.release()
    assert client.exists("atomicops:lock:{report}:wake") == 0


def test_lost_acquire_reply_raises_and_a_retry_gets_the_same_grant(backend, lose_reply):
    _, client = backend
    lock = Lock("report", ttl=10)
    lose_reply("lock_acquire")
    with pytest.raises(OutcomeUnknown):
        lock.acquire()
    assert client.exists(lock.key)  # it did take the lock
    assert not lock.held  # but this object cannot know that yet
    token = int(client.hget(lock.key, "token"))
    assert lock.acquire(blocking=False)  # same owner token: the same grant comes back
    assert lock.fencing_token == token == int(client.get(f"{lock.key}:fence"))
    lock.release()
    assert not client.exists(lock.key)


def test_owned_settles_a_lost_acquire_reply(backend, lose_reply):
    lock = Lock("report", ttl=10)
    lose_reply("lock_acquire")
    with pytest.raises(OutcomeUnknown):
        lock.acquire()
    token = int(backend[1].hget(lock.key, "token"))
    assert lock.owned() is True
    assert lock.held and lock.fencing_token == token


def test_release_after_a_lost_acquire_reply_frees_the_lock(backend, lose_reply):
    _, client = backend
    lose_reply("lock_acquire")
    lock = Lock("report", ttl=10)
    with pytest.raises(OutcomeUnknown):
        with lock:
            pytest.fail("the block must not run when the acquire's outcome is unknown")
    lock.release()
    assert not client.exists(lock.key)


# -- auto-renewal -------------------------------------------------------------------


def wait_until(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_auto_renewal_keeps_the_lock_past_its_ttl(backend):
    # Renewals every 0.05 s leave 0.95 s of slack each: the background runner descheduled
    # for most of a second on a loaded machine still keeps the lease.
    with Lock("report", ttl=1, auto_renew=True, renew_fraction=0.05) as lock:
        assert wait_until(lambda: lock.renewals >= 25, timeout=20)  # >= 1.25 s: past the TTL
        assert lock.owned() and not lock.lost
        assert Lock("report", ttl=10).acquire(blocking=False) is False
    assert not lock.locked()


def test_renewal_finds_the_loss_and_says_so(backend):
    _, client = backend
    seen = []
    lock = Lock("report", ttl=0.6, auto_renew=True, on_lost=seen.append)
    lock.acquire()
    other = take_over(client, lock)
    assert wait_until(lambda: seen == [lock])
    assert lock.lost and not lock.held
    with pytest.raises(LockNotOwned):
        lock.ensure_owned()  # no round trip needed: already known
    assert other.owned()


def test_the_renewal_cap_lets_the_lease_run_out(backend):
    seen = []
    lock = Lock(
        "report", ttl=1, auto_renew=True, renew_fraction=0.1, max_renewals=2, on_lost=seen.append
    )
    lock.acquire()
    assert wait_until(lambda: seen == [lock])
    assert lock.renewals == 2 and lock.lost
    assert Lock("report", ttl=10).acquire(timeout=2)


def test_an_extend_after_the_last_renewal_moves_the_end_of_the_lease(backend):
    seen = []
    lock = Lock(
        "report", ttl=1, auto_renew=True, renew_fraction=0.1, max_renewals=1, on_lost=seen.append
    )
    lock.acquire()
    assert wait_until(lambda: lock.renewals == 1)
    lock.extend(ttl=30)  # the renewer now sleeps until the old deadline, then looks again
    time.sleep(1.5)  # past the deadline the last renewal set
    assert seen == [] and lock.held and not lock.lost
    assert lock.ensure_owned() == lock.fencing_token
    lock.release()


def renewals_of(name: str) -> list[background.Job]:
    """The background runner's renewal jobs of the lease logged as ``name``."""
    return [job for job in background.runner.jobs() if job.name == f"renewal of {name}"]


def test_the_renewer_holds_only_a_weak_reference(backend):
    lock = Lock("report", ttl=30, auto_renew=True)  # first renewal in 10 s
    lock.acquire()
    name = lock.log_name
    assert len(renewals_of(name)) == 1
    del lock
    gc.collect()
    assert not renewals_of(name)  # the finalizer stopped it at once


def test_release_stops_the_renewer(backend):
    lock = Lock("report", ttl=30, auto_renew=True)
    lock.acquire()
    (job,) = renewals_of(lock.log_name)
    lock.release()
    assert job.done and not renewals_of(lock.log_name)


def test_a_renewal_overtaken_by_release_reports_no_loss(backend, monkeypatch):
    # The renewer's extend reaches the server just after release() freed the lock, and
    # its "not the owner" reply is read before release() has forgotten the owner.
    real = wire.roundtrip
    extending, released = threading.Event(), threading.Event()

    def roundtrip(send):
        if send.context.what == "lock_extend":
            extending.set()
            assert released.wait(5)
            return real(send)
        replies = real(send)
        if send.context.what == "lock_release":
            released.set()
            # the renewer has read its reply and finished
            assert wait_until(lambda: not renewals_of(lock.log_name))
        return replies

    monkeypatch.setattr(wire, "roundtrip", roundtrip)
    seen = []
    lock = Lock("report", ttl=1, auto_renew=True, renew_fraction=0.1, on_lost=seen.append)
    lock.acquire()
    assert extending.wait(5)
    lock.release()
    assert seen == [] and not lock.lost


def finalizers_of(obj: object) -> int:
    return sum(
        1
        for f in gc.get_objects()
        if isinstance(f, weakref.finalize) and (f.peek() or (None,))[0] is obj
    )


def test_a_lock_reused_many_times_leaves_no_finalizers_behind(backend):
    lock = Lock("report", ttl=30, auto_renew=True)
    for _ in range(20):
        lock.acquire()
        lock.release()
    assert finalizers_of(lock) == 0
    lock.acquire()
    assert finalizers_of(lock) == 1  # the running renewer's
    lock.release()


# -- the decorator --------------------------------------------------------------


def test_locked_decorator_runs_under_the_lock(backend):
    @locked("report", ttl=10)
    def build(x):
        assert Lock("report", ttl=1).locked()
        return x * 2

    assert build(21) == 42
    assert not Lock("report", ttl=1).locked()


def test_locked_decorator_with_a_name_from_the_arguments(backend):
    @locked(lambda user_id: f"user:{user_id}", ttl=10, timeout=0)
    def work(user_id):
        return Lock(f"user:{user_id}", ttl=1).locked()

    assert work(7) is True
    Lock("user:8", ttl=10).acquire()
    with pytest.raises(LockNotAcquired):
        work(8)


def test_locked_decorator_refuses_bad_arguments_at_decoration():
    with pytest.raises(InvalidInput):
        locked("report", ttl=0)
    with pytest.raises(InvalidInput):
        locked("", ttl=1)


# -- async ------------------------------------------------------------------------


async def test_async_with_and_shared_scripts(backend):
    _, client = backend
    sync_lock = Lock("report", ttl=10)
    sync_lock.acquire()
    sync_lock.release()
    async with Lock("report", ttl=10) as lock:
        assert lock.fencing_token > sync_lock.fencing_token  # one fence for both
        assert await lock.aowned()
        assert await lock.aensure_owned() == lock.fencing_token
        await lock.aextend(ttl=100)
        assert client.pttl(lock.key) > 90_000
        assert await Lock("report", ttl=1).aacquire(blocking=False) is False
    assert not await Lock("report", ttl=1).alocked()


async def test_async_waiter_wakes_on_release(backend, waits):
    holder = Lock("report", ttl=60)
    await holder.aacquire()
    task, began = arelease_later(holder, 0.2, after=waits.started)
    assert await Lock("report", ttl=10).aacquire(timeout=20)
    acquired = time.monotonic()
    await task
    assert waits.woken_by_release() and began[0] < acquired


async def test_async_non_owner_release_raises(backend):
    _, client = backend
    lock = Lock("report", ttl=10)
    await lock.aacquire()
    take_over(client, lock)
    with pytest.raises(LockNotOwned):
        await lock.arelease()


async def test_async_auto_renewal_runs_as_a_task(backend):
    async with Lock("report", ttl=0.5, auto_renew=True, renew_fraction=0.1) as lock:
        deadline = time.monotonic() + 5
        while lock.renewals < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert lock.renewals >= 3 and await lock.aowned()
        assert not renewals_of(lock.log_name)  # a task, not the background runner


async def test_async_locked_decorator(backend):
    @locked("report", ttl=10)
    async def build():
        return await Lock("report", ttl=1).alocked()

    assert await build() is True


# -- scripts and listing -------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "lock_acquire",
        "lock_release",
        "lock_extend",
        "lock_check",
        "semaphore_acquire",
        "semaphore_release",
        "semaphore_extend",
        "semaphore_check",
    ],
)
def test_every_script_declares_a_probe_that_runs_on_scratch_keys(backend, name):
    script = registry.get(name)
    assert script.probe is not None and script.returns
    scratch = [f"probe:{{scratch}}:{i}" for i in range(len(script.keys))]
    script(keys=scratch, args=list(script.probe))  # no error


def test_list_locks_reads_owner_token_and_ttl_by_bounded_scan(backend):
    _, client = backend
    held = {}
    for name in ["b", "a{x}", "c"]:
        held[name] = Lock(name, ttl=10)
        held[name].acquire()
    client.set("atomicops:lock:{notahash}", "x")  # a foreign key matching the pattern
    infos = list_locks()
    assert [i.name for i in infos] == ["a{x}", "b", "c"]  # not the :fence / :wake keys
    first = infos[0]
    assert isinstance(first, LockInfo)
    assert first.key == "atomicops:lock:{a%7Bx%7D}" == lock_key("a{x}")
    assert first.owner == held["a{x}"]._owner
    assert first.fencing_token == held["a{x}"].fencing_token
    assert 0 < first.ttl_ms <= 10_000
    assert len(list_locks(limit=2)) == 2
    held["b"].release()
    assert [i.name for i in list_locks()] == ["a{x}", "c"]


def test_list_locks_follows_the_key_prefix(backend, settings):
    settings.ATOMICOPS = {**settings.ATOMICOPS, "KEY_PREFIX": "my*app"}
    Lock("x", ttl=10).acquire()
    _, client = backend
    client.hset("myXapp:lock:{y}", mapping={"owner": "o", "token": 1})
    assert [i.key for i in list_locks()] == ["my*app:lock:{x}"]


def test_list_locks_rejects_a_bad_limit():
    with pytest.raises(InvalidInput):
        list_locks(limit=0)


@pytest.fixture
def cluster(cluster_server):  # noqa: F811
    client = RedisCluster(host="127.0.0.1", port=cluster_server.port)
    client.flushall()
    yield client
    client.close()


def test_locks_and_semaphores_on_a_cluster_client(cluster, waits):
    holder = Lock("report", ttl=60, client=cluster)
    assert holder.acquire()
    thread, _ = release_later(holder, 0.2, after=waits.started)
    waiter = Lock("report", ttl=10, client=cluster)
    assert waiter.acquire(timeout=20)
    thread.join()
    assert waits.woken_by_release()  # BLPOP went to the node owning the lock's slot
    assert [(i.name, i.fencing_token) for i in list_locks(client=cluster)] == [
        ("report", waiter.fencing_token)
    ]
    assert waiter.fencing_token > holder.fencing_token
    waiter.release()
    with Semaphore("pool", 1, ttl=10, client=cluster) as sem:
        # Tokens never fall below the server's clock in microseconds (a local server here).
        assert sem.holders() == 1 and sem.fencing_token > (time.time() - 60) * 1e6


# -- a lease handed between processes: a fixed owner token (atomicops.celery) ---------


def test_a_fixed_owner_hands_a_held_lock_on_with_its_token(backend):
    producer = Lock("handed", ttl=30, owner="task-1")
    assert producer.acquire(blocking=False)
    # Another object (another process) with the same owner gets the same grant back,
    # its lease reset; any other owner is refused.
    worker = Lock("handed", ttl=5, owner="task-1")
    assert worker.acquire(blocking=False)
    assert worker.fencing_token == producer.fencing_token
    assert 0 < backend[1].pttl(worker.key) <= 5000
    assert not Lock("handed", ttl=5, owner="task-2").acquire(blocking=False)
    info = Lock("handed", ttl=1).holder()
    assert info is not None
    assert (info.owner, info.fencing_token, info.name) == ("task-1", worker.fencing_token, "handed")
    assert 0 < info.ttl_ms <= 5000


def test_a_fixed_owner_releases_what_another_object_took(backend):
    assert Lock("given-back", ttl=30, owner="task-1").acquire(blocking=False)
    with pytest.raises(LockNotOwned):
        Lock("given-back", ttl=1, owner="task-2").release()  # not its lease: unchanged
    assert Lock("given-back", ttl=1).locked()
    Lock("given-back", ttl=1, owner="task-1").release()
    assert Lock("given-back", ttl=1).holder() is None
    with pytest.raises(LockNotOwned):
        Lock("given-back", ttl=1, owner="task-1").release()  # nothing left to give back


async def test_aholder_is_the_async_twin(backend):
    lock = Lock("handed-async", ttl=30, owner="task-9")
    assert await lock.aacquire(blocking=False)
    info = await Lock("handed-async", ttl=1).aholder()
    assert info is not None and info.owner == "task-9"
    await lock.arelease()
    assert await Lock("handed-async", ttl=1).aholder() is None


@pytest.mark.parametrize("owner", ["", 7, b"bytes", "x" * 1001])
def test_a_bad_owner_is_refused(owner):
    with pytest.raises(InvalidInput, match="owner"):
        Lock("name", ttl=1, owner=owner)


def test_a_reentrant_lock_takes_no_fixed_owner():
    with pytest.raises(InvalidInput, match="reentrant lock takes no fixed owner"):
        Lock("name", ttl=1, reentrant=True, owner="task-1")
