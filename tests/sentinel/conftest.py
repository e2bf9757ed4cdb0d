"""Fixtures of the Sentinel tests: a real primary, two replicas and three sentinels per
module and server kind (redis-server, then valkey-server), removed after the module.

``sentinel_set`` is the deployment; it knows the current primary after a failover.
``atomic_sentinel`` points atomicops' settings at it the way a project would,
``{"SENTINELS": [...], "SERVICE": ...}`` (a test adds READ_FROM_REPLICAS or WAIT_REPLICAS
with :func:`configure`), empties it and yields a plain client on the current primary.
A deployment that fails to start fails the tests; with CI=true so does a missing binary.
"""

from __future__ import annotations

import pytest

from tests.conftest import REAL_KINDS, _require
from tests.sentinel.harness import SentinelSet


@pytest.fixture(scope="module", params=REAL_KINDS)
def sentinel_set(request, servers):
    binary = _require(servers, request.param).binary
    started = SentinelSet(binary, request.param).start()
    yield started
    started.remove()


def configure(settings, sentinel_set: SentinelSet, **extra) -> None:
    settings.ATOMICOPS = {
        "SENTINELS": sentinel_set.sentinel_addresses,
        "SERVICE": sentinel_set.service,
        "LOAD_ON_STARTUP": False,
        "STATS_FLUSH_INTERVAL": 0,
        **extra,
    }


@pytest.fixture
def atomic_sentinel(sentinel_set, settings):
    sentinel_set.wait_healthy()
    sentinel_set.empty()
    configure(settings, sentinel_set)
    with sentinel_set.primary().client() as client:
        yield client
