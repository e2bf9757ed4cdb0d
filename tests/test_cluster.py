"""Cluster awareness on a one-node cluster: routing, settings, the bounds of a redirect.

A one-node cluster (all 16384 slots on one primary) is enough to drive redis-py's
RedisCluster clients through atomicops' routing and settings quickly; what needs several
nodes (resharding, failovers, every primitive on 3 primaries) is in tests/cluster/.
"""

from __future__ import annotations

import asyncio
import time

import pytest
import redis
import redis.asyncio.cluster
from django.core import checks
from redis.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import MovedError

from atomicops import (
    ConfigurationError,
    CrossSlotError,
    OutcomeUnknown,
    RedisUnavailable,
    abounded_incr,
    bounded_incr,
)
from atomicops.engine import connection, topology
from atomicops.engine.run import run
from tests.conftest import REAL_KINDS, _require
from tests.servers import Server, free_port


@pytest.fixture(scope="module", params=REAL_KINDS)
def cluster_server(request, servers):
    binary = _require(servers, request.param).binary
    # The cluster bus would default to port + 10000, which may be taken or past 65535.
    server = Server(
        f"{request.param}-cluster",
        binary,
        extra=("--cluster-enabled", "yes", "--cluster-port", str(free_port())),
    )
    server.start()
    client = redis.Redis(port=server.port)
    client.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
    deadline = time.monotonic() + 10
    while client.cluster("info")["cluster_state"] != "ok":
        assert time.monotonic() < deadline, "cluster did not become ok"
        time.sleep(0.05)
    client.close()
    yield server
    server.remove()


@pytest.fixture
def cluster(cluster_server):
    client = RedisCluster(host="127.0.0.1", port=cluster_server.port)
    client.flushall()
    client.script_flush()
    yield client
    client.close()


def test_cross_slot_keys_raise_before_anything_is_sent(cluster, fresh_registry):
    script = fresh_registry.register("pair", "return redis.call('MSET', KEYS[1], 1, KEYS[2], 2)")
    node = cluster.get_default_node().redis_connection
    node.config_resetstat()
    with pytest.raises(CrossSlotError, match="different cluster slots") as info:
        script(["a", "b"], client=cluster)
    assert info.value.keys == ["a", "b"]
    stats = node.info("commandstats")
    assert "cmdstat_evalsha" not in stats and "cmdstat_eval" not in stats


def test_hash_tagged_keys_run_and_fall_back(cluster, fresh_registry):
    script = fresh_registry.register("pair", "return redis.call('MSET', KEYS[1], 1, KEYS[2], 2)")
    assert script(["{u:1}:a", "{u:1}:b"], client=cluster) == b"OK"
    assert cluster.get("{u:1}:b") == b"2"
    cluster.script_flush()
    assert script(["{u:1}:a", "{u:1}:b"], client=cluster) == b"OK"
    assert script.stats["fallbacks"] == 1


def test_load_all_reaches_every_primary(cluster, fresh_registry):
    script = fresh_registry.register("one", "return 1")
    assert fresh_registry.load_all(client=cluster) == {"one": script.sha}
    for node in cluster.get_primaries():
        assert node.redis_connection.script_exists(script.sha) == [True]


def test_the_cluster_setting_builds_sync_and_async_cluster_clients(cluster_server, settings):
    settings.ATOMICOPS = {"URL": cluster_server.url, "CLUSTER": True, "LOAD_ON_STARTUP": False}
    client = connection.get_client()
    assert isinstance(client, RedisCluster)
    assert client.retry.get_retries() == 0  # atomicops decides what may be sent again
    client.flushall()
    assert bounded_incr("{c}:n", 5).value == 1

    async def main():
        found = connection.get_async_client()
        assert isinstance(found, redis.asyncio.cluster.RedisCluster)
        assert found.retry.get_retries() == 0
        try:
            return (await abounded_incr("{c}:n", 5)).value
        finally:
            await found.aclose()

    assert asyncio.run(main()) == 2


@pytest.mark.parametrize(
    "conf, match",
    [
        ({"URL": "redis://127.0.0.1:1/0", "CLUSTER": "yes"}, "must be True or False"),
        ({"CLUSTER": True}, "needs ATOMICOPS\\['URL'\\]"),
        ({"URL": "redis://127.0.0.1:1/0", "CONNECTION": "default", "CLUSTER": True}, "no CONN"),
    ],
)
def test_cluster_setting_mistakes_are_configuration_errors(settings, conf, match):
    settings.ATOMICOPS = conf
    with pytest.raises(ConfigurationError, match=match):
        connection.get_client()


def test_an_unreachable_cluster_is_unavailable_and_a_deploy_warning(settings):
    settings.ATOMICOPS = {"URL": f"redis://127.0.0.1:{free_port()}/0", "CLUSTER": True}
    with pytest.raises(RedisUnavailable, match="cannot read the slot map"):
        bounded_incr("k", 1)
    # The checks every command runs stay quiet and touch no server; --deploy warns.
    assert [m.id for m in checks.run_checks() if m.id.startswith("atomicops")] == []
    ids = [m.id for m in checks.run_checks(include_deployment_checks=True)]
    assert "atomicops.W003" in ids


def test_a_cluster_url_that_cannot_name_a_node_is_e001(settings):
    settings.ATOMICOPS = {"URL": "redis://127.0.0.1:7000/3", "CLUSTER": True}
    [message] = [m for m in checks.run_checks() if m.id == "atomicops.E001"]
    assert "database 0" in message.msg


def test_async_calls_on_a_cache_alias_cluster_get_an_async_twin(
    cluster_server, settings, monkeypatch
):
    sync = RedisCluster(host="127.0.0.1", port=cluster_server.port, socket_timeout=3)
    monkeypatch.setattr(connection, "build_client", lambda: sync)
    settings.ATOMICOPS = {"CONNECTION": "default", "LOAD_ON_STARTUP": False}

    async def main():
        twin = connection.get_async_client()
        try:
            assert isinstance(twin, redis.asyncio.cluster.RedisCluster)
            await abounded_incr("{twin}:n", 3)
            [node] = twin.get_primaries()
            assert node.port == cluster_server.port
            assert node.connection_kwargs["socket_timeout"] == 3
        finally:
            await twin.aclose()

    asyncio.run(main())
    sync.close()


def test_redirects_are_bounded(cluster):
    """MOVED back to the same node, again and again: MAX_HOPS, then the refusal stands."""
    route = topology.Route(cluster, ["k"], "x")
    run(route.start())
    port = cluster.get_default_node().port
    bounce = MovedError(f"{key_slot(b'k')} 127.0.0.1:{port}")
    topology.redirects.reset()
    followed = [run(route.redirected(bounce)) for _ in range(topology.MAX_HOPS + 2)]
    assert followed == [True] * topology.MAX_HOPS + [False, False]
    assert topology.redirects["moved"] == topology.MAX_HOPS
    assert topology.redirects["exhausted"] == 2


def test_an_unknown_outcome_is_never_rerouted(cluster):
    route = topology.Route(cluster, ["k"], "x")
    run(route.start())
    lost = OutcomeUnknown("script 'x' was sent but no reply came")
    assert run(route.unreachable(lost)) is False
    # A refused connection to the only node: re-read the map, nobody else serves it.
    assert run(route.unreachable(RedisUnavailable("refused"))) is False
    assert route.hops == 1
