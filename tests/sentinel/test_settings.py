"""The Sentinel and replication settings: what is refused, with no server and no I/O."""

from __future__ import annotations

import re

import pytest
import redis.asyncio.sentinel
import redis.sentinel

from atomicops import ConfigurationError, NotReplicated
from atomicops.engine import compat, connection, replication
from atomicops.exceptions import AtomicOpsError

SENTINELS = [("127.0.0.1", 1), ("127.0.0.1", 2)]


def _settings(settings, **atomicops):
    settings.ATOMICOPS = {"LOAD_ON_STARTUP": False, "STATS_FLUSH_INTERVAL": 0, **atomicops}


def test_sentinels_build_a_sentinel_managed_client_without_io(settings):
    _settings(
        settings,
        SENTINELS=SENTINELS,
        SERVICE="mymaster",
        SENTINEL_KWARGS={"password": "s3cret"},
        SOCKET_TIMEOUT=1.5,
    )
    client = connection.get_client()  # nothing listens on ports 1 and 2: no I/O here
    pool = client.connection_pool
    assert isinstance(pool, redis.sentinel.SentinelConnectionPool) and pool.is_master
    assert pool.service_name == "mymaster"
    assert pool.connection_kwargs["socket_timeout"] == 1.5
    assert pool.connection_kwargs["retry"].get_retries() == 0  # atomicops decides re-sends
    manager = pool.sentinel_manager
    assert [s.connection_pool.connection_kwargs["port"] for s in manager.sentinels] == [1, 2]
    assert manager.sentinel_kwargs["password"] == "s3cret"
    assert compat.is_sentinel_client(client)
    replicas = connection.replica_client(client)
    assert not replicas.connection_pool.is_master
    assert connection.replica_client(client) is replicas  # made once
    assert "mymaster" in connection.describe_source()


async def test_async_calls_get_an_asyncio_sentinel_client(settings):
    _settings(settings, SENTINELS=SENTINELS, SERVICE="mymaster")
    client = connection.get_async_client()
    assert isinstance(client.connection_pool, redis.asyncio.sentinel.SentinelConnectionPool)
    assert compat.is_sentinel_client(client)
    assert not connection.replica_client(client).connection_pool.is_master


@pytest.mark.parametrize(
    "atomicops, message",
    [
        ({"SENTINELS": SENTINELS}, "needs ATOMICOPS['SERVICE']"),
        ({"SERVICE": "mymaster"}, "SENTINELS'] is not"),
        ({"SENTINELS": SENTINELS, "SERVICE": ""}, "needs ATOMICOPS['SERVICE']"),
        ({"SENTINELS": "127.0.0.1:26379", "SERVICE": "m"}, "(host, port) pairs"),
        ({"SENTINELS": [], "SERVICE": "m"}, "(host, port) pairs"),
        ({"SENTINELS": [("h", "26379")], "SERVICE": "m"}, "(host, port) pairs"),
        (
            {"SENTINELS": SENTINELS, "SERVICE": "m", "URL": "redis://127.0.0.1:1/0"},
            "cannot be combined with URL",
        ),
        (
            {"SENTINELS": SENTINELS, "SERVICE": "m", "URL": "redis://h:1/0", "CLUSTER": True},
            "cannot be combined with URL, CLUSTER",
        ),
        ({"SENTINELS": SENTINELS, "SERVICE": "m", "SENTINEL_KWARGS": "x"}, "SENTINEL_KWARGS"),
        ({"URL": "redis://127.0.0.1:1/0", "READ_FROM_REPLICAS": True}, "needs replicas"),
        ({"URL": "redis://127.0.0.1:1/0", "READ_FROM_REPLICAS": 1}, "True or False"),
        ({"URL": "redis://127.0.0.1:1/0", "WAIT_REPLICAS": -1}, "int >= 0"),
        ({"URL": "redis://127.0.0.1:1/0", "WAIT_REPLICAS": True}, "int >= 0"),
        ({"URL": "redis://127.0.0.1:1/0", "WAIT_REPLICAS": 1, "WAIT_TIMEOUT_MS": 0}, ">= 1"),
        (
            {"URL": "redis://127.0.0.1:1/0", "WAIT_REPLICAS": 1, "WAIT_TIMEOUT_MS": 5000},
            "below SOCKET_TIMEOUT",
        ),
    ],
)
def test_unusable_settings_are_configuration_errors(settings, atomicops, message):
    _settings(settings, **atomicops)
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        connection.check_settings()
    with pytest.raises(ConfigurationError):
        connection.get_client()


def test_read_from_replicas_on_a_cache_alias_that_is_not_sentinel(settings):
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "plain": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"},
    }
    _settings(settings, CONNECTION="plain", READ_FROM_REPLICAS=True)
    with pytest.raises(ConfigurationError, match="is not"):
        connection.get_client()


def test_the_policy_follows_the_settings(settings):
    _settings(settings, URL="redis://127.0.0.1:1/0")
    assert replication.active is None  # off: the registry pays one None check
    _settings(settings, URL="redis://127.0.0.1:1/0", WAIT_REPLICAS=2, WAIT_TIMEOUT_MS=250)
    assert replication.active == replication.Policy(("WAIT", 2, 250), False)
    _settings(settings, SENTINELS=SENTINELS, SERVICE="m", READ_FROM_REPLICAS=True)
    assert replication.active == replication.Policy(None, True)
    _settings(settings, URL="redis://127.0.0.1:1/0", WAIT_REPLICAS="2")
    assert isinstance(replication.active.error, ConfigurationError)  # raised per call


def test_not_replicated_is_public_and_carries_its_figures():
    error = NotReplicated("m", acked=1, required=2, result=5, key="k", script="s")
    assert isinstance(error, AtomicOpsError)
    assert (error.acked, error.required, error.result, error.key) == (1, 2, 5, "k")
    import atomicops

    assert "NotReplicated" in atomicops.__all__ and atomicops.NotReplicated is NotReplicated


def test_fakeredis_has_no_wait_and_says_so(settings):
    """fakeredis has no replicas, no WAIT and no sentinel: a write under WAIT_REPLICAS is
    applied and then reported as not replicated, never silently taken as replicated."""
    import fakeredis

    from atomicops import bounded_incr, get_counter

    _settings(settings, URL="redis://127.0.0.1:1/0", WAIT_REPLICAS=1, WAIT_TIMEOUT_MS=10)
    fake = fakeredis.FakeRedis()
    with pytest.raises(NotReplicated, match="refused WAIT") as caught:
        bounded_incr("k", 5, client=fake)
    assert (caught.value.acked, caught.value.required) == (0, 1)
    assert fake.get("k") == b"1"  # applied, as the error says
    assert get_counter("k", client=fake) == 1  # reads send no WAIT


def test_manage_py_check_reports_unusable_sentinel_settings(settings):
    from django.core import checks

    _settings(settings, SENTINELS=SENTINELS)  # no SERVICE
    errors = [m for m in checks.run_checks() if m.id == "atomicops.E001"]
    assert errors and "SERVICE" in errors[0].msg
    _settings(settings, URL="redis://h:1/0", CLUSTER=True, WAIT_TIMEOUT_MS=0, WAIT_REPLICAS=1)
    assert [m.id for m in checks.run_checks() if m.id == "atomicops.E001"]
