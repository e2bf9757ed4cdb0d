"""Settings, where the client comes from, system checks, and start-up with Redis down."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from django.core import checks
from django.core.signals import request_started

from atomicops import ConfigurationError
from atomicops.apps import _UID, _load_on_first_request, load_quietly
from atomicops.checks import check_connection
from atomicops.conf import DEFAULTS, get_settings
from atomicops.engine import connection
from tests.conftest import REAL_KINDS
from tests.servers import Server, free_port

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_are_merged_and_override_settings_resets(settings):
    settings.ATOMICOPS = {"URL": "redis://127.0.0.1:1/0", "KEY_PREFIX": "x"}
    conf = get_settings()
    assert conf["KEY_PREFIX"] == "x"
    assert conf["SOCKET_TIMEOUT"] == DEFAULTS["SOCKET_TIMEOUT"]
    settings.ATOMICOPS = {"URL": "redis://127.0.0.1:2/0"}
    assert get_settings()["KEY_PREFIX"] == "atomicops"
    with pytest.raises(TypeError):
        get_settings()["KEY_PREFIX"] = "mutated"  # read-only view, the user's dict untouched


def test_own_client_from_url_has_no_automatic_retry(settings):
    settings.ATOMICOPS = {"URL": "redis://127.0.0.1:1/3", "SOCKET_TIMEOUT": 1.5}
    client = connection.get_client()
    assert client is connection.get_client()  # cached
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["db"] == 3 and kwargs["socket_timeout"] == 1.5
    assert kwargs["retry"].get_retries() == 0


def test_client_argument_wins(settings):
    settings.ATOMICOPS = {"URL": "redis://127.0.0.1:1/0"}
    mine = redis.Redis(port=2)
    assert connection.get_client(mine) is mine


@pytest.mark.parametrize(
    "backend_path",
    ["django_redis.cache.RedisCache", "django.core.cache.backends.redis.RedisCache"],
)
def test_cache_alias_gives_a_working_client(real_server, settings, fresh_registry, backend_path):
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "atomic": {"BACKEND": backend_path, "LOCATION": real_server.url},
    }
    settings.ATOMICOPS = {"CONNECTION": "atomic"}
    script = fresh_registry.register("incr", "return redis.call('INCR', KEYS[1])")
    assert script(["c"]) == 1
    assert redis.Redis(port=real_server.port).get("c") == b"1"


async def test_async_client_derived_from_cache_alias(real_server, settings, fresh_registry):
    settings.CACHES = {
        "default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": real_server.url}
    }
    settings.ATOMICOPS = {}
    script = fresh_registry.register("incr", "return redis.call('INCR', KEYS[1])")
    assert await script.acall(["c"]) == 1
    assert script(["c"]) == 2


def test_default_cache_is_used_when_nothing_is_set(real_server, settings):
    settings.CACHES = {
        "default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": real_server.url}
    }
    settings.ATOMICOPS = {}
    assert connection.get_client().connection_pool.connection_kwargs["port"] == real_server.port


@pytest.mark.parametrize(
    "atomicops, caches, message",
    [
        ({}, {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
         "has no Redis connection"),
        ({"CONNECTION": "missing"}, {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
         "not in CACHES"),
        ({"CONNECTION": "default"}, {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
         "needs django-redis"),
        ({"URL": "http://example"}, {}, "not a Redis URL"),
    ],
)  # fmt: skip
def test_misconfiguration_is_a_check_error_with_a_hint(settings, atomicops, caches, message):
    settings.CACHES = caches or {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    }
    settings.ATOMICOPS = atomicops
    errors = check_connection()
    assert len(errors) == 1
    assert errors[0].id == "atomicops.E001" and errors[0].level == checks.ERROR
    assert message in errors[0].msg and "ATOMICOPS" in errors[0].hint
    with pytest.raises(ConfigurationError, match=message):
        connection.get_client()


def test_good_configuration_has_no_check_errors(settings):
    settings.ATOMICOPS = {"URL": "redis://127.0.0.1:6390/0"}
    assert check_connection() == []


def _manage(*args: str, redis_url: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "DEMO_DATA_DIR": str(
            Path(os.environ.get("TMPDIR", "/tmp")) / f"atomicops-check-{os.getpid()}"
        ),
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_manage_py_check_and_migrate_work_with_redis_down():
    dead = f"redis://127.0.0.1:{free_port()}/0"
    started = time.monotonic()
    result = _manage("check", redis_url=dead)
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout
    result = _manage("migrate", "--noinput", redis_url=dead)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 30  # nothing waited on the dead server for long


def test_first_request_loads_scripts_in_the_background(real_server, settings, client):
    settings.ATOMICOPS = {"URL": real_server.url}
    request_started.connect(_load_on_first_request, dispatch_uid=_UID)
    client.get("/admin/login/")
    shas = [script.sha for script in connection_registry()]
    probe = redis.Redis(port=real_server.port)
    deadline = time.monotonic() + 5
    while not all(probe.script_exists(*shas)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert all(probe.script_exists(*shas))
    # One-shot: the receiver disconnected itself.
    assert not request_started.disconnect(dispatch_uid=_UID)


def test_startup_load_with_redis_down_only_warns(settings, caplog, client):
    settings.ATOMICOPS = {
        "URL": f"redis://127.0.0.1:{free_port()}/0",
        "SOCKET_CONNECT_TIMEOUT": 0.2,
    }
    with caplog.at_level(logging.WARNING, logger="atomicops"):
        assert load_quietly() is False
    assert "scripts not loaded at startup" in caplog.text
    request_started.connect(_load_on_first_request, dispatch_uid=_UID)
    started = time.monotonic()
    response = client.get("/admin/login/")
    assert response.status_code == 200
    assert time.monotonic() - started < 2


def connection_registry():
    from atomicops import registry

    return list(registry)


def test_unix_socket_url(servers, settings, fresh_registry, tmp_path):
    from tests.conftest import _require
    from tests.servers import Server

    binary = _require(servers, "redis").binary
    sock = tmp_path / "redis.sock"
    server = Server("unix", binary, extra=("--unixsocket", str(sock))).start()
    try:
        settings.ATOMICOPS = {"URL": f"unix://{sock}?db=0"}
        script = fresh_registry.register("incr", "return redis.call('INCR', KEYS[1])")
        assert script(["c"]) == 1
        assert redis.Redis(unix_socket_path=str(sock)).get("c") == b"1"
    finally:
        server.remove()


# -- sync and async on the same settings reach the same server, database and user -------

PASSWORD = "default-s3cret"
ALICE = ("alice", "alice-s3cret")
BACKENDS = ["django_redis.cache.RedisCache", "django.core.cache.backends.redis.RedisCache"]


@dataclass
class SecuredServer(Server):
    """A server with ``requirepass`` and an ACL user; pings with the password."""

    def ready(self) -> None:
        with self.admin(0) as client:
            client.ping()

    def admin(self, db: int) -> redis.Redis:
        return redis.Redis(port=self.port, password=PASSWORD, db=db, socket_connect_timeout=0.5)


SECURE = (
    "--requirepass", PASSWORD,
    "--user", ALICE[0], "on", f">{ALICE[1]}", "~*", "&*", "+@all",
)  # fmt: skip


@pytest.fixture(scope="module", params=REAL_KINDS)
def secured(request, servers):
    from tests.conftest import _require

    binary = _require(servers, request.param).binary
    server = SecuredServer(f"{request.param}-auth", binary, extra=SECURE).start()
    yield server
    server.remove()


def _userinfo(who: str) -> str:
    return f":{PASSWORD}@" if who == "password" else f"{ALICE[0]}:{ALICE[1]}@"


@pytest.mark.parametrize("who", ["password", "user"])
@pytest.mark.parametrize("mode", ["URL", *BACKENDS])
async def test_sync_and_async_calls_share_server_database_and_credentials(
    secured, settings, mode, who
):
    from atomicops import abounded_incr, bounded_incr

    url = f"redis://{_userinfo(who)}127.0.0.1:{secured.port}/3"
    for db in (0, 3):
        secured.admin(db).flushdb()
    secured.admin(0).client_kill_filter(_type="normal", skipme=True)  # earlier tests' pools
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    if mode == "URL":
        settings.ATOMICOPS = {"URL": url, "LOAD_ON_STARTUP": False}
    else:
        settings.CACHES = {**settings.CACHES, "atomic": {"BACKEND": mode, "LOCATION": url}}
        settings.ATOMICOPS = {"CONNECTION": "atomic", "LOAD_ON_STARTUP": False}

    assert bounded_incr("sync-first", 10).value == 1
    assert (await abounded_incr("sync-first", 10)).value == 2
    assert (await abounded_incr("async-first", 10)).value == 1
    assert bounded_incr("async-first", 10).value == 2

    assert secured.admin(3).mget("sync-first", "async-first") == [b"2", b"2"]
    assert secured.admin(0).dbsize() == 0
    if who == "user":  # each side logged in as alice, not as the default user
        names = [c["user"] for c in secured.admin(0).client_list() if c.get("db") == "3"]
        assert names and set(names) == {"alice"}


@pytest.mark.parametrize("backend_path", BACKENDS)
async def test_async_twin_of_a_cache_alias_keeps_every_connection_setting(
    secured, settings, backend_path
):
    options = (
        {"SOCKET_TIMEOUT": 1.5, "SOCKET_CONNECT_TIMEOUT": 0.7}
        if backend_path.startswith("django_redis")
        else {"socket_timeout": 1.5, "socket_connect_timeout": 0.7}
    )
    settings.CACHES = {
        "default": {
            "BACKEND": backend_path,
            # localhost: django-redis keeps pools by URL, and another test used 127.0.0.1's.
            "LOCATION": f"redis://{ALICE[0]}:{ALICE[1]}@localhost:{secured.port}/3",
            "OPTIONS": options,
        }
    }
    settings.ATOMICOPS = {"CONNECTION": "default", "LOAD_ON_STARTUP": False}
    sync_kwargs = connection.get_client().connection_pool.connection_kwargs
    client = connection.get_async_client()
    kwargs = client.connection_pool.connection_kwargs
    for name in ("host", "port", "db", "username", "password", "socket_timeout"):
        assert kwargs[name] == sync_kwargs[name], name
    assert (kwargs["db"], kwargs["username"], kwargs["socket_timeout"]) == (3, "alice", 1.5)
    assert kwargs["socket_connect_timeout"] == 0.7
    # redis-py's own retry stays off: atomicops decides what may be sent twice.
    assert kwargs["retry"].get_retries() == 0
    made = client.connection_pool.make_connection()
    assert made.retry.get_retries() == 0
    assert not any(name in kwargs for name in ("parser_class", "redis_connect_func"))
    assert await client.ping()
    await client.aclose()


@pytest.mark.parametrize("backend_path", BACKENDS)
async def test_unix_socket_cache_alias_with_password_and_database(
    servers, settings, tmp_path, backend_path
):
    from atomicops import abounded_incr, bounded_incr
    from tests.conftest import _require

    sock = tmp_path / "redis.sock"
    binary = _require(servers, "redis").binary
    server = SecuredServer("unix-auth", binary, extra=(*SECURE, "--unixsocket", str(sock))).start()
    try:
        settings.CACHES = {
            "default": {
                "BACKEND": backend_path,
                "LOCATION": f"unix://:{PASSWORD}@{sock}?db=3",
            }
        }
        settings.ATOMICOPS = {"CONNECTION": "default", "LOAD_ON_STARTUP": False}
        assert bounded_incr("u", 10).value == 1
        assert (await abounded_incr("u", 10)).value == 2
        async_pool = connection.get_async_client().connection_pool
        assert async_pool.connection_class is redis.asyncio.connection.UnixDomainSocketConnection
        assert server.admin(3).get("u") == b"2" and server.admin(0).dbsize() == 0
    finally:
        server.remove()


def test_ssl_settings_are_carried_to_the_async_twin(settings):
    settings.ATOMICOPS = {"CONNECTION": "default"}
    pool = redis.ConnectionPool.from_url(
        "rediss://alice:pw@example.invalid:6380/2?ssl_cert_reqs=required"
        "&ssl_ca_certs=/etc/ssl/ca.pem&ssl_check_hostname=True"
    )
    twin = connection.async_twin(redis.Redis(connection_pool=pool))
    async_pool = twin.connection_pool
    assert async_pool.connection_class is redis.asyncio.connection.SSLConnection
    kwargs = async_pool.connection_kwargs
    assert (kwargs["username"], kwargs["password"], kwargs["db"]) == ("alice", "pw", 2)
    assert kwargs["ssl_ca_certs"] == "/etc/ssl/ca.pem" and kwargs["ssl_cert_reqs"] == "required"
    assert kwargs["ssl_check_hostname"] is True


def test_a_setting_asyncio_cannot_honour_is_refused_not_dropped(settings):
    settings.ATOMICOPS = {"CONNECTION": "default"}
    pool = redis.ConnectionPool(
        connection_class=redis.SSLConnection, host="example.invalid", ssl_validate_ocsp=True
    )
    with pytest.raises(ConfigurationError, match="'ssl_validate_ocsp'.*set ATOMICOPS\\['URL'\\]"):
        connection.async_twin(redis.Redis(connection_pool=pool))


def test_the_carried_settings_are_what_redis_py_names():
    # An upgrade of redis-py that renames a connection setting fails here, not in production.
    sync_names = set()
    async_names = set()
    for name in ("Connection", "UnixDomainSocketConnection", "SSLConnection"):
        sync_names |= connection.init_parameters(getattr(redis.connection, name))
        async_names |= connection.init_parameters(getattr(redis.asyncio.connection, name))
    essential = {"host", "port", "path", "db", "username", "password", "socket_timeout"}
    assert essential <= connection.CARRIED_SETTINGS & sync_names & async_names
    # driver_info (8.0) and legacy_responses (8.1) are carried where the installed
    # redis-py has them; every other name exists on every version pyproject allows.
    newer = {"driver_info", "legacy_responses"}
    assert connection.CARRIED_SETTINGS - newer <= sync_names | {"lib_name", "lib_version"}


@pytest.mark.parametrize("backend_path", BACKENDS)
async def test_an_async_rate_limited_view_counts_through_a_cache_alias_with_a_password(
    secured, settings, backend_path
):
    # Before: every async call failed AUTH, and the limiter failed open on every hit.
    from django.test import AsyncClient

    secured.admin(3).flushdb()
    settings.CACHES = {
        "default": {
            "BACKEND": backend_path,
            "LOCATION": f"redis://:{PASSWORD}@127.0.0.1:{secured.port}/3",
        }
    }
    settings.ATOMICOPS = {"CONNECTION": "default", "LOAD_ON_STARTUP": False}
    client = AsyncClient()
    statuses = [(await client.get("/rl/user_async/")).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert secured.admin(3).keys("atomicops:rl:*")
