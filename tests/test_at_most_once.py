"""A write script is sent at most once per call; a lost reply raises OutcomeUnknown.

The script below keeps the server busy past the client's socket timeout, then writes.
redis-py's own retry re-sends it after the timeout and the write lands several times;
atomicops sends it once, whatever client it is given, and says the outcome is unknown.
"""

from __future__ import annotations

import asyncio
import time

import pytest
import redis
import redis.asyncio

from atomicops import OutcomeUnknown, RedisUnavailable
from tests.conftest import _require

# A plain loop, not TIME: Valkey freezes TIME for the duration of a script.
SLOW_INCR = """
local x = 0
for i = 1, tonumber(ARGV[1]) do x = x + i end
return redis.call('INCR', KEYS[1])
"""
TIMEOUT = 0.2  # the client gives up after 0.2 s
BUSY = 1.0  # the script runs about 1 s: a wide margin over TIMEOUT on a loaded machine


def settle(client: redis.Redis) -> int:
    """Wait until the server is free again and return the counter."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return int(client.get("counter") or 0)
        except redis.TimeoutError:
            if time.monotonic() > deadline:
                raise


@pytest.fixture
def slow_incr(fresh_registry):
    return fresh_registry.register("slow_incr", SLOW_INCR, keys=["counter"], args=["loops"])


@pytest.fixture
def loops(real_server) -> int:
    return calibrate(real_server.port)


def calibrate(port: int) -> int:
    """Loop count that keeps this server busy for about BUSY seconds."""
    client = redis.Redis(port=port)
    sample = 2_000_000
    client.eval(SLOW_INCR, 1, "calibration", 1)  # compile and cache first
    elapsed = float("inf")
    for _ in range(3):  # the fastest run: a slow run would make the script too short
        started = time.perf_counter()
        client.eval(SLOW_INCR, 1, "calibration", sample)
        elapsed = min(elapsed, time.perf_counter() - started)
    client.delete("calibration")
    client.close()
    return int(sample * BUSY / elapsed)


def test_redis_py_retry_applies_a_late_write_more_than_once(servers):
    """The trap itself, measured once: redis-py's default client re-sends after the timeout."""
    real_server = _require(servers, "redis")
    loops = calibrate(real_server.port)
    redis.Redis(port=real_server.port).delete("counter")
    client = redis.Redis(port=real_server.port, socket_timeout=TIMEOUT)
    with pytest.raises(redis.TimeoutError):
        client.eval(SLOW_INCR, 1, "counter", loops)
    applied = settle(redis.Redis(port=real_server.port, socket_timeout=10))
    print(f"redis-py eval with socket_timeout={TIMEOUT}: applied {applied} times")
    assert applied > 1


def test_own_client_sends_once_and_says_outcome_unknown(real_server, settings, slow_incr, loops):
    settings.ATOMICOPS = {"URL": real_server.url, "SOCKET_TIMEOUT": TIMEOUT}
    slow_incr(["counter"], [1])  # warm: the script is cached, nothing slow yet
    with pytest.raises(OutcomeUnknown, match="may or may not have been applied") as info:
        slow_incr(["counter"], [loops])
    assert info.value.key == "counter" and info.value.script == "slow_incr"
    assert isinstance(info.value.__cause__, redis.TimeoutError)
    assert settle(redis.Redis(port=real_server.port, socket_timeout=10)) == 2
    assert slow_incr.stats["errors"] == 1


def test_handed_redis_py_client_with_default_retry_sends_once(real_server, slow_incr, loops):
    client = redis.Redis(port=real_server.port, socket_timeout=TIMEOUT)  # retries by default
    with pytest.raises(OutcomeUnknown):
        slow_incr(["counter"], [loops], client=client)
    assert settle(redis.Redis(port=real_server.port, socket_timeout=10)) == 1
    # The client is still usable afterwards: the late reply was discarded with its connection.
    assert slow_incr(["counter"], [1], client=client) == 2


@pytest.mark.parametrize(
    "backend_path, options",
    [
        ("django_redis.cache.RedisCache", {"SOCKET_TIMEOUT": TIMEOUT}),
        ("django.core.cache.backends.redis.RedisCache", {"socket_timeout": TIMEOUT}),
    ],
)
def test_cache_backed_clients_send_once(
    real_server, settings, slow_incr, loops, backend_path, options
):
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        # django-redis keeps one pool per LOCATION for the whole process: an earlier test's
        # cache on this server (without the short timeout) would lend its pool here. The
        # timeout in the URL makes the LOCATION this test's own.
        "atomic": {
            "BACKEND": backend_path,
            "LOCATION": f"{real_server.url}?socket_timeout={TIMEOUT}",
            "OPTIONS": options,
        },
    }
    settings.ATOMICOPS = {"CONNECTION": "atomic"}
    with pytest.raises(OutcomeUnknown):
        slow_incr(["counter"], [loops])
    assert settle(redis.Redis(port=real_server.port, socket_timeout=10)) == 1


async def test_async_sends_once(real_server, slow_incr, loops):
    client = redis.asyncio.Redis(port=real_server.port, socket_timeout=TIMEOUT)
    try:
        with pytest.raises(OutcomeUnknown):
            await slow_incr.acall(["counter"], [loops], client=client)
        await asyncio.sleep(0.2)
        assert settle(redis.Redis(port=real_server.port, socket_timeout=10)) == 1
    finally:
        await client.aclose()


def test_unreachable_server_is_not_outcome_unknown(settings, slow_incr):
    from tests.servers import free_port

    settings.ATOMICOPS = {"URL": f"redis://127.0.0.1:{free_port()}/0"}
    with pytest.raises(RedisUnavailable, match="was not applied") as info:
        slow_incr(["counter"], [1])
    assert not isinstance(info.value, OutcomeUnknown)
    assert isinstance(info.value.__cause__, redis.ConnectionError)


async def test_async_unreachable_server(settings, slow_incr):
    from tests.servers import free_port

    settings.ATOMICOPS = {"URL": f"redis://127.0.0.1:{free_port()}/0"}
    with pytest.raises(RedisUnavailable) as info:
        await slow_incr.acall(["counter"], [1])
    assert not isinstance(info.value, OutcomeUnknown)
