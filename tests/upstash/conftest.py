"""Fixtures of the REST transport tests: the local REST server in front of a real Redis."""

from __future__ import annotations

import pytest
import redis

from tests.conftest import _require
from tests.upstash.server import READONLY_TOKEN, TOKEN, RestServer

__all__ = ["READONLY_TOKEN", "TOKEN"]


@pytest.fixture(scope="session")
def rest_server(servers):
    """The local REST server, for the session, in front of the suite's redis-server."""
    backend = _require(servers, "redis")
    with RestServer(backend.port) as rest:
        yield rest


@pytest.fixture
def rest(rest_server, servers):
    """The REST server with an empty Redis behind it, no faults and no requests logged."""
    backend = servers["redis"]
    if backend.process is None or backend.process.poll() is not None:
        backend.start()
    direct = redis.Redis(port=backend.port)
    direct.flushall()
    direct.script_flush()
    direct.close()
    rest_server.clear()
    yield rest_server
    rest_server.clear()


@pytest.fixture
def direct(rest, servers):
    """A redis-py client on the Redis behind the REST server: the ground truth."""
    client = redis.Redis(port=servers["redis"].port)
    yield client
    client.close()


@pytest.fixture
def rest_settings(rest, settings):
    """atomicops configured for the REST transport on the local server."""
    settings.ATOMICOPS = {
        "REST_URL": rest.url,
        "REST_TOKEN": TOKEN,
        "LOAD_ON_STARTUP": False,
        "STATS_FLUSH_INTERVAL": 0,
        "SOCKET_TIMEOUT": 3.0,  # generous: CI machines are shared
    }
    return settings.ATOMICOPS
