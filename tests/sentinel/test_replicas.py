"""Replicas behind Sentinel: reads sent to them, WAIT after writes, NotReplicated, READONLY.

A real primary with two replicas and three sentinels per server kind (tests/sentinel/
conftest.py). What the replicas ran is read from their ``INFO commandstats``: a write
script never reaches one, a read-only script does when READ_FROM_REPLICAS asks.
"""

from __future__ import annotations

import time

import pytest
import redis
import redis.sentinel

from atomicops import (
    Lock,
    NotReplicated,
    ServerRefused,
    aget_counter,
    aincr,
    batch,
    bounded_incr,
    get_counter,
    incr,
    registry,
)
from atomicops.engine import compat, connection
from tests.sentinel.conftest import configure


def commandstats(node) -> dict[str, int]:
    with node.client() as client:
        stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): facts["calls"] for name, facts in stats.items()}


def reset_stats(sentinel_set) -> None:
    for node in sentinel_set.nodes:
        if node.running:
            node.command("CONFIG", "RESETSTAT")


def replicated(primary_client, replicas: int) -> None:
    assert primary_client.execute_command("WAIT", replicas, 2000) >= replicas


def test_calls_go_to_the_primary_the_sentinels_name(sentinel_set, atomic_sentinel):
    assert bounded_incr("c", 10).value == 1
    assert incr("c", 2) == 3
    assert atomic_sentinel.get("c") == b"3"
    assert compat.is_sentinel_client(connection.get_client())


def test_read_only_scripts_run_on_a_replica_and_writes_never_do(
    sentinel_set, atomic_sentinel, settings
):
    configure(settings, sentinel_set, READ_FROM_REPLICAS=True)
    incr("views", 5)
    replicated(atomic_sentinel, 2)
    reset_stats(sentinel_set)
    for _ in range(20):  # new connections rotate over the replicas
        assert get_counter("views") == 5
    for _ in range(20):
        incr("views")
    replicas = sentinel_set.replicas()
    on_replicas = [commandstats(node) for node in replicas]
    on_primary = commandstats(sentinel_set.primary())
    assert sum(stats.get("evalsha_ro", 0) + stats.get("eval_ro", 0) for stats in on_replicas) == 20
    for stats in on_replicas:  # what a replica ran of a write: replicated effects, never a script
        assert not {"evalsha", "eval", "evalsha_ro_write"} & set(stats), stats
    assert on_primary.get("evalsha", 0) == 20 and "evalsha_ro" not in on_primary


def test_a_replica_flushed_of_its_scripts_still_answers(sentinel_set, atomic_sentinel, settings):
    configure(settings, sentinel_set, READ_FROM_REPLICAS=True)
    incr("seen", 3)
    replicated(atomic_sentinel, 2)
    assert get_counter("seen") == 3
    for node in sentinel_set.replicas():
        node.command("SCRIPT", "FLUSH")
    script = registry.get("counter_get")
    before = script.stats["fallbacks"]
    for _ in range(4):
        assert get_counter("seen") == 3
    assert script.stats["fallbacks"] > before  # NOSCRIPT on a replica: EVAL_RO with the body


async def test_async_reads_from_replicas(sentinel_set, atomic_sentinel, settings):
    configure(settings, sentinel_set, READ_FROM_REPLICAS=True)
    assert await aincr("a", 4) == 4
    replicated(atomic_sentinel, 2)
    reset_stats(sentinel_set)
    assert await aget_counter("a") == 4
    assert sum(commandstats(n).get("evalsha_ro", 0) for n in sentinel_set.replicas()) >= 1


def test_wait_replicas_returns_once_replicated(sentinel_set, atomic_sentinel, settings):
    configure(settings, sentinel_set, WAIT_REPLICAS=2, WAIT_TIMEOUT_MS=2000)
    reset_stats(sentinel_set)
    assert bounded_incr("w", 10).value == 1
    for node in sentinel_set.replicas():  # no wait here: WAIT already saw both acknowledge
        with node.client() as client:
            assert client.get("w") == b"1"
    assert commandstats(sentinel_set.primary())["wait"] == 1  # in the same round trip


def test_not_replicated_says_the_write_was_applied(sentinel_set, atomic_sentinel, settings):
    configure(settings, sentinel_set, WAIT_REPLICAS=3, WAIT_TIMEOUT_MS=100)
    with pytest.raises(NotReplicated) as caught:
        bounded_incr("n", 10)
    error = caught.value
    assert (error.acked, error.required) == (2, 3)
    assert "WAS applied on the primary" in error.message and error.key == "n"
    assert atomic_sentinel.get("n") == b"1"  # written, once
    assert error.result is not None


def test_a_lock_is_not_held_unless_replicated_as_asked(sentinel_set, atomic_sentinel, settings):
    configure(settings, sentinel_set, WAIT_REPLICAS=3, WAIT_TIMEOUT_MS=100)
    lock = Lock("job", ttl=10)
    with pytest.raises(NotReplicated) as caught:
        lock.acquire(blocking=False)
    assert "NOT held" in caught.value.message and caught.value.acked == 2
    assert not lock.held and lock.fencing_token is None
    assert not atomic_sentinel.exists(lock.key)  # the grant was released
    configure(settings, sentinel_set, WAIT_REPLICAS=2, WAIT_TIMEOUT_MS=2000)
    assert lock.acquire(blocking=False) and lock.held
    for node in sentinel_set.replicas():
        with node.client() as client:
            assert int(client.hget(lock.key, "token")) == lock.fencing_token
    lock.release()


class _NamesAReplica:
    """A sentinel manager that names a replica as the primary: what a client meets
    between a failover and its next question to the sentinels."""

    def __init__(self, address):
        self.address = address
        self.asked = 0

    def discover_master(self, service):
        self.asked += 1
        return self.address


@pytest.mark.parametrize("wait", [0, 1])
def test_a_demoted_primary_refuses_writes_as_server_refused(
    sentinel_set, atomic_sentinel, settings, wait
):
    # Each refusal as the caller meets it, with no retry in front (see the next test).
    configure(settings, sentinel_set, WAIT_REPLICAS=wait, WAIT_TIMEOUT_MS=100, RETRY_DEADLINE_MS=0)
    replica = sentinel_set.replicas()[0]
    manager = _NamesAReplica(replica.pair)
    client = redis.Redis(
        connection_pool=redis.sentinel.SentinelConnectionPool("svc", manager, socket_timeout=2)
    )
    for _ in range(2):
        with pytest.raises(ServerRefused) as caught:
            bounded_incr("r", 10, client=client)
        assert caught.value.code == "READONLY" and "nothing was applied" in caught.value.message
    assert manager.asked == 2  # each refusal dropped the connection: the next asked again
    assert atomic_sentinel.get("r") is None
    client.close()


def test_a_refused_write_is_retried_asking_the_sentinels_each_time(
    sentinel_set, atomic_sentinel, settings
):
    """With a retry deadline a READONLY refusal is sent again, each time on a connection
    that asked the sentinels for the primary anew; when they keep naming a replica, the
    refusal is raised once the deadline has passed, and nothing was applied."""
    configure(settings, sentinel_set, RETRY_DEADLINE_MS=400)
    manager = _NamesAReplica(sentinel_set.replicas()[0].pair)
    client = redis.Redis(
        connection_pool=redis.sentinel.SentinelConnectionPool("svc", manager, socket_timeout=2)
    )
    started = time.monotonic()
    with pytest.raises(ServerRefused) as caught:
        bounded_incr("rr", 10, client=client)
    took = time.monotonic() - started
    assert caught.value.code == "READONLY"
    assert 0.3 <= took <= 3.0, took
    assert manager.asked >= 3  # once per attempt: each retry asked the sentinels again
    assert atomic_sentinel.get("rr") is None
    client.close()


def test_a_django_redis_sentinel_cache_alias(sentinel_set, atomic_sentinel, settings):
    pytest.importorskip("django_redis.client.sentinel")
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "sentinel": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://{sentinel_set.service}/0",
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.SentinelClient",
                "CONNECTION_FACTORY": "django_redis.pool.SentinelConnectionFactory",
                "SENTINELS": sentinel_set.sentinel_addresses,
            },
        },
    }
    settings.ATOMICOPS = {
        "CONNECTION": "sentinel",
        "READ_FROM_REPLICAS": True,
        "WAIT_REPLICAS": 2,
        "WAIT_TIMEOUT_MS": 2000,
        "LOAD_ON_STARTUP": False,
        "STATS_FLUSH_INTERVAL": 0,
    }
    reset_stats(sentinel_set)
    assert incr("d", 2) == 2
    assert get_counter("d") == 2  # on a replica: WAIT made sure it is there
    assert atomic_sentinel.get("d") == b"2"
    assert sum(commandstats(n).get("evalsha_ro", 0) for n in sentinel_set.replicas()) == 1


async def test_a_django_redis_sentinel_cache_alias_async(sentinel_set, atomic_sentinel, settings):
    pytest.importorskip("django_redis.client.sentinel")
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "sentinel": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://{sentinel_set.service}/0",
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.SentinelClient",
                "CONNECTION_FACTORY": "django_redis.pool.SentinelConnectionFactory",
                "SENTINELS": sentinel_set.sentinel_addresses,
            },
        },
    }
    settings.ATOMICOPS = {"CONNECTION": "sentinel", "LOAD_ON_STARTUP": False}
    assert await aincr("e", 3) == 3
    assert atomic_sentinel.get("e") == b"3"


class _AsyncNamesAReplica(_NamesAReplica):
    async def discover_master(self, service):
        return super().discover_master(service)


async def test_a_demoted_primary_refuses_async_writes_as_server_refused(
    sentinel_set, atomic_sentinel, settings
):
    import redis.asyncio
    import redis.asyncio.sentinel

    from atomicops import abounded_incr

    configure(settings, sentinel_set, WAIT_REPLICAS=1, WAIT_TIMEOUT_MS=100, RETRY_DEADLINE_MS=0)
    manager = _AsyncNamesAReplica(sentinel_set.replicas()[0].pair)
    pool = redis.asyncio.sentinel.SentinelConnectionPool("svc", manager, socket_timeout=2)
    client = redis.asyncio.Redis(connection_pool=pool)
    for _ in range(2):
        with pytest.raises(ServerRefused) as caught:
            await abounded_incr("ar", 10, client=client)
        assert caught.value.code == "READONLY"
    assert manager.asked == 2
    assert atomic_sentinel.get("ar") is None
    await client.aclose()


def test_not_replicated_makes_the_next_call_ask_the_sentinels(
    sentinel_set, atomic_sentinel, settings
):
    """After a NotReplicated the pool's idle connections are dropped: if the sentinels
    promoted another node meanwhile, the next call goes there, not to the old primary."""
    configure(settings, sentinel_set, WAIT_REPLICAS=3, WAIT_TIMEOUT_MS=50)
    client = connection.get_client()
    with pytest.raises(NotReplicated):
        bounded_incr("s", 10)
    pool = client.connection_pool
    assert all(conn._sock is None for conn in pool._available_connections)


async def test_async_writes_wait_for_replicas_too(sentinel_set, atomic_sentinel, settings):
    from atomicops import abounded_incr

    configure(settings, sentinel_set, WAIT_REPLICAS=2, WAIT_TIMEOUT_MS=2000)
    assert (await abounded_incr("aw", 10)).value == 1
    for node in sentinel_set.replicas():
        with node.client() as client:
            assert client.get("aw") == b"1"
    configure(settings, sentinel_set, WAIT_REPLICAS=3, WAIT_TIMEOUT_MS=100)
    with pytest.raises(NotReplicated) as caught:
        await abounded_incr("aw", 10)
    assert (caught.value.acked, caught.value.required) == (2, 3)
    assert atomic_sentinel.get("aw") == b"2"


def test_a_batch_reads_from_a_replica_and_writes_on_the_primary(
    sentinel_set, atomic_sentinel, settings
):
    """A batch plans each call as a single call is planned: its read-only script goes to a
    replica with EVALSHA_RO, its write to the primary."""
    configure(settings, sentinel_set, READ_FROM_REPLICAS=True)
    incr("batched", 2)
    replicated(atomic_sentinel, 2)
    reset_stats(sentinel_set)
    with batch() as b:
        read = b.get_counter("batched")
        write = b.incr("batched")
    assert read.result() == 2 and write.result() == 3
    on_replicas = [commandstats(node) for node in sentinel_set.replicas()]
    assert sum(stats.get("evalsha_ro", 0) + stats.get("eval_ro", 0) for stats in on_replicas) == 1
    assert commandstats(sentinel_set.primary()).get("evalsha", 0) == 1


def test_the_fallback_metric_counts_under_wait_replicas(sentinel_set, atomic_sentinel, settings):
    pytest.importorskip("prometheus_client")
    from tests.observe_worker import Scraped

    configure(settings, sentinel_set, WAIT_REPLICAS=2, WAIT_TIMEOUT_MS=2000)
    collector = Scraped()  # metrics are on by default: what this test adds to them
    assert bounded_incr("fb", 10).value == 1
    atomic_sentinel.script_flush()
    assert bounded_incr("fb", 10).value == 2  # NOSCRIPT, then the body, then WAIT
    with batch() as b:
        pending = b.bounded_incr("fb", 10)
    atomic_sentinel.script_flush()
    with batch() as b:
        flushed = b.bounded_incr("fb", 10)
    assert pending.result().value == 3 and flushed.result().value == 4
    labels = {"script": "counter_bounded_incr"}
    assert collector.get_sample_value("atomicops_script_fallbacks_total", labels) == 2
    assert collector.get_sample_value("atomicops_script_calls_total", labels) == 4
