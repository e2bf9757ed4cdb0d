"""Every primitive's contract on a 3-primary cluster with replicas, sync and async.

The settings are what a project writes, ``{"URL": <any node>, "CLUSTER": True}``; some
calls pass ``client=`` a RedisCluster instead. Keys are spread over every primary.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import redis.asyncio.cluster
from redis.crc import key_slot

from atomicops import (
    CrossSlotError,
    Lock,
    Semaphore,
    abounded_incr,
    acompare_and_set,
    aexact_window,
    afixed_window,
    asliding_window,
    atoken_bucket,
    bounded_incr,
    compare_and_set,
    exact_window,
    fixed_window,
    key_for,
    registry,
    sliding_window,
    token_bucket,
)
from atomicops.engine import background, compat, connection, topology
from atomicops.leases import claims
from tests import lock_kinds
from tests.factories import ArticleFactory

pytestmark = pytest.mark.slow

KEYS = [f"contract:{i}" for i in range(24)]


def spread(cluster, keys) -> set[int]:
    """The ports of the primaries owning ``keys`` (all three, or the test proves less)."""
    return {cluster.owner(key_slot(key.encode())).port for key in keys}


def test_keys_reach_every_primary(cluster, atomic_cluster):
    assert len(spread(cluster, KEYS)) == 3


def test_counters_compare_and_set(atomic_cluster):
    for key in KEYS:
        assert [bounded_incr(key, 3).value for _ in range(4)] == [1, 2, 3, 3]
        assert bounded_incr(key, 5, client=atomic_cluster).value == 4
        assert atomic_cluster.get(key) == b"4"
    for key in KEYS:
        assert compare_and_set(f"{key}:cas", None, "a") is True
        assert compare_and_set(f"{key}:cas", "b", "c") is False
        assert compare_and_set(f"{key}:cas", "a", "c", client=atomic_cluster) is True
        assert atomic_cluster.get(f"{key}:cas") == b"c"
    assert topology.redirects["moved"] == 0  # the map was right: no hop


async def test_async_counters_compare_and_set(cluster, atomic_cluster):
    assert compat.is_async_cluster(connection.get_async_client())  # built from the settings
    own = redis.asyncio.cluster.RedisCluster.from_url(cluster.startup_url)
    try:
        for key in KEYS:
            assert [(await abounded_incr(key, 3)).value for _ in range(4)] == [1, 2, 3, 3]
            assert (await abounded_incr(key, 5, client=own)).value == 4
            assert await acompare_and_set(f"{key}:cas", None, "a") is True
            assert await acompare_and_set(f"{key}:cas", "a", "c", client=own) is True
        assert [atomic_cluster.get(key) for key in KEYS] == [b"4"] * len(KEYS)
    finally:
        await own.aclose()


def test_rate_limits(atomic_cluster):
    for key in KEYS[:6]:
        assert [fixed_window(f"fw:{key}", 2, 60_000).allowed for _ in range(3)] == [
            True, True, False,
        ]  # fmt: skip
        assert [sliding_window(f"sw:{key}", 2, 60_000).allowed for _ in range(3)] == [
            True, True, False,
        ]  # fmt: skip
        assert [exact_window(f"ew:{key}", 2, 60_000).allowed for _ in range(3)] == [
            True, True, False,
        ]  # fmt: skip
        hits = [token_bucket(f"tb:{key}", 2, 0.001, client=atomic_cluster) for _ in range(3)]
        assert [hit.allowed for hit in hits] == [True, True, False]


async def test_async_rate_limits(atomic_cluster):
    for key in KEYS[:6]:
        assert [(await afixed_window(f"fw:{key}", 2, 60_000)).allowed for _ in range(3)] == [
            True, True, False,
        ]  # fmt: skip
        assert [(await asliding_window(f"sw:{key}", 2, 60_000)).allowed for _ in range(3)] == [
            True, True, False,
        ]  # fmt: skip
        assert [(await aexact_window(f"ew:{key}", 2, 60_000)).allowed for _ in range(3)] == [
            True, True, False,
        ]  # fmt: skip
        assert [(await atoken_bucket(f"tb:{key}", 2, 0.001)).allowed for _ in range(3)] == [
            True, True, False,
        ]  # fmt: skip


def test_a_registry_script_and_cross_slot_keys(atomic_cluster, fresh_registry):
    pair = fresh_registry.register(
        "pair", "redis.call('MSET', KEYS[1], ARGV[1], KEYS[2], ARGV[1]) return 1"
    )
    for index in range(12):
        assert pair([f"{{t{index}}}:a", f"{{t{index}}}:b"], ["v"]) == 1
        assert atomic_cluster.get(f"{{t{index}}}:b") == b"v"
    with pytest.raises(CrossSlotError):
        pair(["a", "b"], ["v"])


async def test_async_registry_script(atomic_cluster):
    script = registry.register(
        "cluster_echo", "return redis.call('SET', KEYS[1], ARGV[1])", keys=["k"], args=["v"]
    )
    try:
        for key in KEYS:
            assert await script.acall([key], ["x"]) == b"OK"
        assert {atomic_cluster.get(key) for key in KEYS} == {b"x"}
    finally:
        registry.unregister("cluster_echo")


def test_registry_loads_every_primary(cluster, atomic_cluster, fresh_registry):
    script = fresh_registry.register("one", "return 1")
    assert fresh_registry.load_all() == {"one": script.sha}
    for node in cluster.primaries():
        with node.client() as client:
            assert client.script_exists(script.sha) == [True]


def test_lock_blocking_wake_up_and_semaphore(atomic_cluster):
    for name in ("alpha", "beta", "gamma"):  # three names, on different slots
        holder = Lock(f"contract-{name}", ttl=30)
        assert holder.acquire()
        waited: list[float] = []

        def wait(name=name, waited=waited):
            started = time.monotonic()
            with Lock(f"contract-{name}", ttl=30, timeout=10):
                waited.append(time.monotonic() - started)

        thread = threading.Thread(target=wait)
        thread.start()
        time.sleep(0.3)
        holder.release()
        thread.join(15)
        # Woken by the release's wake-up on the lock's node, not by the 30 s lease.
        assert waited and 0.25 < waited[0] < 3
    seats = [Semaphore("contract-seats", limit=2, ttl=30) for _ in range(3)]
    assert [seat.acquire(blocking=False) for seat in seats] == [True, True, False]
    seats[0].release()
    assert seats[2].acquire(blocking=False)


async def test_async_lock_blocking_wake_up_and_semaphore(atomic_cluster):
    holder = Lock("contract-async", ttl=30)
    assert await holder.aacquire()

    async def wait() -> float:
        started = time.monotonic()
        async with Lock("contract-async", ttl=30, timeout=10):
            return time.monotonic() - started

    waiter = asyncio.create_task(wait())
    await asyncio.sleep(0.3)
    await holder.arelease()
    assert 0.25 < await asyncio.wait_for(waiter, 15) < 3
    seats = [Semaphore("contract-aseats", limit=2, ttl=30) for _ in range(3)]
    assert [await seat.aacquire(blocking=False) for seat in seats] == [True, True, False]


def test_fair_read_write_multi_and_reentrant_locks(cluster, atomic_cluster):
    from atomicops import FairLock, MultiLock, ReadWriteLock, scan_locks
    from tests.test_multilock import same_slot_names

    with FairLock("contract-fair", ttl=30, timeout=5) as fair:
        assert fair.fencing_token > 0
    rw = ReadWriteLock("contract-doc", ttl=30)
    with rw.read(timeout=5), rw.read(timeout=5) as second:
        assert not rw.write().acquire(blocking=False)
    with rw.write(timeout=5) as w:
        assert w.fencing_token > second.fencing_token
        assert not rw.read().acquire(blocking=False)
    # Names on every primary: one group per slot, taken in slot order, all or none.
    names = [f"contract-acct:{i}" for i in range(6)]
    assert len(spread(cluster, [f"atomicops:lock:{{{n}}}" for n in names])) == 3
    m = MultiLock(list(reversed(names)), ttl=30, timeout=5)
    with m:
        assert set(m.fencing_tokens) == set(names)
        assert {i.name for i in scan_locks().locks} >= set(names)
        assert not MultiLock(names[:2], ttl=30).acquire(blocking=False)
    blocker = Lock(names[4], ttl=30)
    blocker.acquire()
    assert not m.acquire(timeout=0.3)
    assert not any(atomic_cluster.exists(f"atomicops:lock:{{{n}}}") for n in names[:4])
    blocker.release()
    together = MultiLock(same_slot_names("contract-slot:"), ttl=30)
    assert len(together._groups) == 1 and together.acquire(blocking=False)
    together.release()
    reentrant = Lock("contract-re", ttl=30, reentrant=True)
    with reentrant, reentrant:
        assert atomic_cluster.hget(reentrant.key, "n") == b"2"
    assert not reentrant.locked()


async def test_async_fair_read_write_multi_and_reentrant_locks(atomic_cluster):
    from atomicops import FairLock, MultiLock, ReadWriteLock

    async with FairLock("contract-afair", ttl=30, timeout=5) as fair:
        assert fair.fencing_token > 0
    rw = ReadWriteLock("contract-adoc", ttl=30)
    async with rw.read(timeout=5):
        assert not await rw.write().aacquire(blocking=False)
    async with rw.write(timeout=5) as w:
        assert w.fencing_token > 0
    names = [f"contract-aacct:{i}" for i in range(4)]
    async with MultiLock(names, ttl=30, timeout=5) as m:
        assert set(m.fencing_tokens) == set(names)
    reentrant = Lock("contract-are", ttl=30, reentrant=True)
    async with reentrant:
        async with reentrant:
            assert reentrant.depth == 2
    assert not await reentrant.alocked()


def test_fair_lock_order_on_the_cluster(atomic_cluster):
    lock_kinds.fifo("contract-fifo", lapse=False)
    lock_kinds.fifo("contract-fifo-lapse", lapse=True)
    lock_kinds.dead_waiter_skipped("contract-fair-dead")


def test_read_write_lock_on_the_cluster(atomic_cluster):
    lock_kinds.readers_share_writers_exclude("contract-rw")
    lock_kinds.writer_not_starved("contract-rw-stream")


def test_cross_slot_multilock_transfers_on_the_cluster(atomic_cluster):
    lock_kinds.transfers_conserve_the_total("contract-bank")


@pytest.mark.django_db
def test_atomic_counter(atomic_cluster):
    articles = [ArticleFactory() for _ in range(6)]
    for article in articles:
        assert [article.views.incr().value for _ in range(3)] == [1, 2, 3]
        assert atomic_cluster.get(key_for(article, "views")) == b"3"


@pytest.mark.django_db
def test_rate_limit_decorator_through_the_test_client(atomic_cluster, client, django_user_model):
    for name in ("ann", "bo", "cy"):
        client.force_login(django_user_model.objects.create_user(name, password="x"))
        assert [client.get("/rl/user/").status_code for _ in range(3)] == [200, 200, 429]


@pytest.mark.django_db(transaction=True)
async def test_rate_limit_decorator_on_an_async_view(atomic_cluster, async_client):
    statuses = [(await async_client.get("/rl/user_async/")).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


def test_wait_replicas_on_a_cluster(cluster, atomic_cluster, settings):
    """WAIT_REPLICAS (#15) on a cluster: the WAIT goes in the write's batch to the node
    that ran it (each primary here has one replica)."""
    from atomicops import NotReplicated

    deadline = time.monotonic() + 15  # a replica's first sync waits repl-diskless-sync-delay
    for node in cluster.primaries():
        with node.client() as client:
            while client.info("replication").get("slave0", {}).get("state") != "online":
                assert time.monotonic() < deadline, f"{node.name} has no online replica"
                time.sleep(0.1)
    base = {"URL": cluster.startup_url, "CLUSTER": True, "LOAD_ON_STARTUP": False}
    settings.ATOMICOPS = {**base, "WAIT_REPLICAS": 1, "WAIT_TIMEOUT_MS": 2000}
    for key in KEYS[:6]:  # keys on every primary
        assert bounded_incr(key, 10).value == 1
    settings.ATOMICOPS = {**base, "WAIT_REPLICAS": 2, "WAIT_TIMEOUT_MS": 50}
    with pytest.raises(NotReplicated) as caught:
        bounded_incr(KEYS[0], 10)
    assert (caught.value.acked, caught.value.required) == (1, 2)
    assert int(atomic_cluster.get(KEYS[0])) == 2  # applied, once


# -- batches and stacked limits (#17) ----------------------------------------------------


def test_batch_is_one_round_trip_per_primary(atomic_cluster, monkeypatch):
    from atomicops import batch
    from atomicops.engine import wire
    from atomicops.engine.ops import Call

    sends: list = []
    roundtrip = wire.roundtrip
    monkeypatch.setattr(wire, "roundtrip", lambda send: sends.append(send) or roundtrip(send))
    with batch() as b:
        pending = [b.bounded_incr(key, 10) for key in KEYS]
    assert len(sends) == 3  # the keys live on three primaries
    assert [p.result().value for p in pending] == [1] * len(KEYS)
    sends.clear()
    with pytest.raises(CrossSlotError), batch() as b:  # raised when added, nothing sent
        b.add(Call("counter_incr", ["{a}1", "{b}2"], [1, 0]))
    assert not sends


async def test_abatch_is_one_round_trip_per_primary(atomic_cluster, sends):
    from atomicops import abatch

    async with abatch() as b:
        pending = [b.incr(key, 2) for key in KEYS]
    assert len(sends) == 3
    assert [p.result() for p in pending] == [2] * len(KEYS)


def test_stacked_limits_on_a_cluster_are_checked_one_by_one(atomic_cluster, rf):
    from django.http import HttpResponse

    from atomicops import rate_limit

    @rate_limit(3, 60_000, key="ip", group="cl-outer")
    @rate_limit(2, 60_000, key="ip", group="cl-inner")
    def view(request):
        return HttpResponse("ok")

    statuses = [view(rf.get("/", REMOTE_ADDR="10.0.0.5")).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    # Their keys are tagged by group, so in different slots: not all-or-nothing there.
    assert atomic_cluster.get("atomicops:rl:fixed_window:{cl-outer|ip:10.0.0.5}") == b"3"


@pytest.mark.urls("tests.security_urls")
@pytest.mark.django_db
def test_idempotency_records_and_their_tally_share_a_slot(atomic_cluster, settings):
    """The store script writes the record and the client's tally in one call."""
    from django.test import Client

    from atomicops.web.idempotency import record_key, usage_keys

    settings.ATOMICOPS = {**settings.ATOMICOPS, "IDEMPOTENCY_MAX_CLIENT_BYTES": 4000}
    client = Client()
    post = lambda key: client.post("/idem/sized/?size=1500", HTTP_IDEMPOTENCY_KEY=key)  # noqa: E731
    first = post("cl-a")
    assert post("cl-a").content == first.content  # stored, replayed
    post("cl-b")
    assert "Idempotent-Replayed" not in post("cl-c")  # past the bound
    record = record_key("ip:127.0.0.1", "cl-a")
    sizes, used = usage_keys("ip:127.0.0.1")
    assert key_slot(record.encode()) == key_slot(sizes.encode()) == key_slot(used.encode())
    assert 0 < int(atomic_cluster.get(used)) <= 4000


def test_renewals_reach_each_lease_on_its_own_node(atomic_cluster):
    # Names on different slots, so on different primaries: each renewal is routed to its
    # node like any call, and each node's round trips get a lane of their own.
    locks = [Lock(f"renewed-{name}", ttl=1, auto_renew=True) for name in ("a", "b", "c", "d")]
    for lock in locks:
        assert lock.acquire(blocking=False)
    atomic_cluster.hset("{claim}", "owner", "me")
    atomic_cluster.pexpire("{claim}", 900)
    held = claims.hold("{claim}", "me", 900)
    nodes = {atomic_cluster.get_node_from_key(lock.key).name for lock in locks}
    time.sleep(2.5)  # the holder sleeps through more than two leases
    for lock in locks:
        assert atomic_cluster.pttl(lock.key) > 0 and not lock.lost and lock.renewals >= 4
    assert atomic_cluster.pttl("{claim}") > 0 and not held.lost
    assert len(nodes) > 1 and len(background.runner.lanes()) >= len(nodes)
    held.stop()
    for lock in locks:
        lock.release()
