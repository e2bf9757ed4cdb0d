"""Cluster awareness: cross-slot keys refused before sending, loading on every primary.

A one-node cluster (all 16384 slots on one primary) is enough to drive redis-py's
RedisCluster client through atomicops' routing; a multi-node suite comes later.
"""

from __future__ import annotations

import time

import pytest
import redis
from redis.cluster import RedisCluster

from atomicops import CrossSlotError
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
    server.stop()


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
