"""Settings, where the client comes from, system checks, and start-up with Redis down."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from django.core import checks
from django.core.signals import request_started

from atomicops import ConfigurationError, connection
from atomicops.apps import _UID, _load_on_first_request, load_quietly
from atomicops.checks import check_connection
from atomicops.conf import DEFAULTS, get_settings
from tests.servers import free_port

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
        server.stop()
