"""Fixtures of the multi-node cluster tests: a real cluster per module and server kind.

``cluster`` starts 3 primaries and 3 replicas (redis-server, then valkey-server) on free
ports, with their cluster bus ports set, and removes them after the module. A cluster
that fails to start fails the tests (there is no skip for it; with CI=true a missing
server binary fails too). ``atomic_cluster`` points atomicops' settings at it the way a
project would, ``{"URL": <one node>, "CLUSTER": True}``, empties every primary and
yields a plain RedisCluster for the test's own reads.
"""

from __future__ import annotations

import pytest
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from atomicops.engine import topology
from tests.cluster.harness import TestCluster
from tests.conftest import REAL_KINDS, _require


@pytest.fixture(scope="module", params=REAL_KINDS)
def cluster(request, servers):
    binary = _require(servers, request.param).binary
    started = TestCluster(binary, request.param).start()
    yield started
    started.remove()


def empty(cluster: TestCluster) -> None:
    for node in cluster.primaries():
        with node.client() as client:
            client.flushall()
            client.script_flush()


@pytest.fixture
def atomic_cluster(cluster, settings):
    cluster.wait_healthy()
    empty(cluster)
    settings.ATOMICOPS = {"URL": cluster.startup_url, "CLUSTER": True, "LOAD_ON_STARTUP": False}
    client = RedisCluster.from_url(cluster.startup_url, retry=Retry(NoBackoff(), 0))
    topology.redirects.reset()
    yield client
    client.close()
