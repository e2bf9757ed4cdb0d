"""The REST transport's settings, errors and waits, against the local REST server.

Typed errors are the RESP ones: the same data read over RESP (a redis-py client on the
Redis behind the REST server) and over REST must raise the same class. HTTP-only
failures (a bad token, a read-only token, a URL that is not Upstash's) are
ConfigurationErrors that say what to fix, and nothing is applied.
"""

from __future__ import annotations

import threading
import time

import pytest
from django.http import HttpResponse
from django.test import RequestFactory
from upstash_redis import Redis as SdkRedis
from upstash_redis.asyncio import Redis as AsyncSdkRedis

import atomicops
from atomicops import ConfigurationError, DataError, InvalidInput, Lock, Semaphore, rate_limit
from atomicops.engine import compat, connection
from atomicops.engine import rest as transport
from atomicops.scripts.registry import ScriptRegistry
from tests.upstash.server import READONLY_TOKEN, TOKEN

pytestmark = [pytest.mark.real]

scripts = ScriptRegistry()
ECHO = scripts.register(
    "rest_echo", "return redis.call('GET', KEYS[1])", keys=["key"], readonly=True
)
BUMP = scripts.register("rest_bump", "return redis.call('INCR', KEYS[1])", keys=["counter"])


def _settings(settings, url, token, **extra):
    settings.ATOMICOPS = {
        "REST_URL": url,
        "REST_TOKEN": token,
        "LOAD_ON_STARTUP": False,
        "STATS_FLUSH_INTERVAL": 0,
        "SOCKET_TIMEOUT": 0.5,
        **extra,
    }


# -- settings and clients ----------------------------------------------------------------


def test_settings_build_a_rest_client(rest_settings, rest):
    client = connection.get_client()
    assert type(client) is transport.RestClient
    assert client.url == rest.url
    assert connection.describe_source() == f"Upstash REST API at {rest.url}"
    connection.check_settings()


async def test_one_async_client_per_event_loop(rest_settings):
    client = connection.get_async_client()
    assert type(client) is transport.AsyncRestClient
    assert connection.get_async_client() is client


def test_rest_true_reads_upstash_environment(settings, rest, monkeypatch):
    monkeypatch.setenv("UPSTASH_REDIS_REST_URL", rest.url)
    monkeypatch.setenv("UPSTASH_REDIS_REST_TOKEN", TOKEN)
    settings.ATOMICOPS = {"REST": True, "LOAD_ON_STARTUP": False, "STATS_FLUSH_INTERVAL": 0}
    assert atomicops.incr("from-env") == 1
    monkeypatch.delenv("UPSTASH_REDIS_REST_TOKEN")
    connection.reset_clients()
    with pytest.raises(ConfigurationError, match="UPSTASH_REDIS_REST_TOKEN"):
        connection.get_client()


@pytest.mark.parametrize(
    "conf, words",
    [
        ({"REST_URL": "https://x.upstash.io"}, "REST_TOKEN"),
        ({"REST_TOKEN": "t"}, "REST_URL"),
        ({"REST": "yes"}, "True or False"),
        ({"REST_URL": "https://x.upstash.io", "REST_TOKEN": "t", "URL": "redis://h"}, "URL"),
        ({"REST_URL": "x.upstash.io", "REST_TOKEN": "t"}, "https://"),
    ],
)
def test_bad_rest_settings(settings, monkeypatch, conf, words):
    monkeypatch.delenv("UPSTASH_REDIS_REST_URL", raising=False)
    monkeypatch.delenv("UPSTASH_REDIS_REST_TOKEN", raising=False)
    settings.ATOMICOPS = {"LOAD_ON_STARTUP": False, **conf}
    with pytest.raises(ConfigurationError, match=words):
        connection.check_settings()


def test_sdk_internals_atomicops_uses(rest):
    """compat.upstash_sdk_parts: the SDK's private names, pinned (tests/test_compat.py's job
    for redis-py)."""
    sdk = SdkRedis(rest.url, TOKEN, allow_telemetry=False)
    assert compat.upstash_sdk_parts(sdk) == (rest.url, TOKEN)
    assert compat.upstash_sdk_type(SdkRedis) == "sync"
    assert compat.upstash_sdk_type(AsyncSdkRedis) == "async"
    assert compat.upstash_sdk_type(dict) is None
    wrapped = connection.get_client(sdk)
    assert type(wrapped) is transport.RestClient and connection.get_client(sdk) is wrapped
    with pytest.raises(ConfigurationError, match="a-prefixed"):
        connection.get_async_client(sdk)


# -- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_bad_token_is_a_configuration_error(settings, rest, direct, mode):
    _settings(settings, rest.url, "not-the-token")
    with pytest.raises(ConfigurationError, match="REST_TOKEN") as caught:
        if mode == "sync":
            atomicops.incr("k")
        else:
            await atomicops.aincr("k")
    assert "HTTP 401" in caught.value.message and "nothing was applied" in caught.value.message
    assert direct.get("k") is None


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_readonly_token_runs_readonly_scripts_only(settings, rest, direct, mode):
    direct.set("n", 7)
    _settings(settings, rest.url, READONLY_TOKEN)
    if mode == "sync":
        assert atomicops.get_counter("n") == 7
        with pytest.raises(ConfigurationError) as caught:
            atomicops.bounded_incr("n", 10)
    else:
        assert await atomicops.aget_counter("n") == 7
        with pytest.raises(ConfigurationError) as caught:
            await atomicops.abounded_incr("n", 10)
    assert caught.value.script == "counter_bounded_incr"
    assert "read-only token" in caught.value.message
    assert direct.get("n") == b"7"


def test_script_errors_match_resp(rest_settings, direct):
    direct.hset("h", "f", "v")
    with pytest.raises(DataError) as over_resp:
        atomicops.incr("h", client=direct)
    with pytest.raises(DataError) as over_rest:
        atomicops.incr("h")
    assert over_rest.value.message == over_resp.value.message
    assert over_rest.value.script == "counter_incr"


def test_not_an_upstash_endpoint(settings, rest):
    _settings(settings, rest.url + "/not-here", TOKEN)
    with pytest.raises(ConfigurationError, match="not an Upstash REST endpoint"):
        atomicops.incr("k")


def test_bytes_that_are_not_utf8_are_refused_before_sending(rest_settings, rest):
    with pytest.raises(InvalidInput, match="not UTF-8"):
        atomicops.compare_and_set("k", None, b"\xff\xfe")
    assert rest.requests == []


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_binary_replies_come_back_intact(rest_settings, direct, mode):
    value = bytes(range(256))
    direct.set("blob", value)
    if mode == "sync":
        assert ECHO(keys=["blob"]) == value
    else:
        assert await ECHO.acall(keys=["blob"]) == value


# -- registry scripts, locks, semaphores, the decorator with the SDK's clients ------------


async def test_registry_scripts_with_sdk_clients(rest, direct, rest_settings):
    sdk = SdkRedis(rest.url, TOKEN, allow_telemetry=False)
    assert BUMP(keys=["b"], client=sdk) == 1
    async_sdk = AsyncSdkRedis(rest.url, TOKEN, allow_telemetry=False)
    assert await BUMP.acall(keys=["b"], client=async_sdk) == 2
    assert scripts.load_all(client=sdk) == {"rest_echo": ECHO.sha, "rest_bump": BUMP.sha}
    assert direct.get("b") == b"2"


def test_lock_waits_in_short_requests_and_honours_its_timeout(rest_settings, rest, settings):
    settings.ATOMICOPS = {**rest_settings, "SOCKET_TIMEOUT": 1.0}  # BLPOPs of 0.8 s at most
    holder = Lock("job", 10)
    assert holder.acquire()
    rest.clear()
    waiter = Lock("job", 10)
    started = time.monotonic()
    assert waiter.acquire(timeout=1.0) is False
    waited = time.monotonic() - started
    assert 0.95 <= waited < 3.0  # generous above: CI machines are shared
    waits = [
        float(request.commands[-1][-1])
        for request in rest.requests
        if request.commands[-1][0] == "BLPOP"
    ]
    # Short blocking requests, each below the request timeout, then one more attempt each.
    assert waits and all(0 < wait <= 0.8 for wait in waits), waits
    assert sum(waits) <= 1.0
    assert len(rest.requests) <= 2 * len(waits) + 1


def test_lock_waiter_is_woken_by_release(rest_settings, rest):
    holder = Lock("wake", 10)
    assert holder.acquire()
    threading.Timer(0.2, holder.release).start()
    waiter = Lock("wake", 10)
    started = time.monotonic()
    assert waiter.acquire(timeout=5)
    assert time.monotonic() - started < 1.5  # woken: its BLPOP would wait 2.4 s
    assert waiter.fencing_token > holder.fencing_token
    waiter.release()


async def test_semaphore_with_async_sdk_client(rest, rest_settings):
    sdk = AsyncSdkRedis(rest.url, TOKEN, allow_telemetry=False)
    first, second, third = (Semaphore("pool", 2, 10, client=sdk) for _ in range(3))
    assert await first.aacquire(blocking=False)
    assert await second.aacquire(blocking=False)
    assert not await third.aacquire(blocking=False)
    await first.arelease()
    assert await third.aacquire(blocking=False)


@pytest.mark.django_db
def test_rate_limit_decorator_with_sdk_client(rest, rest_settings):
    sdk = SdkRedis(rest.url, TOKEN, allow_telemetry=False)

    @rate_limit(2, 60_000, key="ip", client=sdk)
    def view(request):
        return HttpResponse("ok")

    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.1")
    assert [view(request).status_code for _ in range(3)] == [200, 200, 429]


def test_the_small_redis_py_surface_tools_use(rest_settings, direct):
    """What the lock listing and the demo call on "a client" (never atomicops' calls)."""
    from redis.exceptions import ResponseError

    client = connection.get_client()
    assert client.set("k", "v") is True and client.get("k") == b"v"
    assert client.info("server")["redis_version"] == direct.info("server")["redis_version"]
    pipe = client.pipeline(transaction=False)
    pipe.set("p", 1)
    pipe.get("p")
    assert pipe.execute() == [True, b"1"]
    assert client.pttl("k") == -1 and client.delete("k", "p") == 2
    with pytest.raises(ResponseError, match="unknown command"):
        client.execute_command("NOSUCHCOMMAND")
    assert client.script_flush() is True


@pytest.mark.django_db
def test_idempotent_and_get_or_set_over_rest(rest_settings, rest, direct):
    from atomicops import get_or_set, idempotent

    runs = []

    @idempotent()
    def view(request):
        runs.append(1)
        return HttpResponse("made")

    factory = RequestFactory()
    first = view(factory.post("/", HTTP_IDEMPOTENCY_KEY="k1", REMOTE_ADDR="10.0.0.2"))
    again = view(factory.post("/", HTTP_IDEMPOTENCY_KEY="k1", REMOTE_ADDR="10.0.0.2"))
    assert (first.content, again.content, again["Idempotent-Replayed"]) == (
        b"made",
        b"made",
        "true",
    )
    assert runs == [1]
    assert get_or_set("computed", lambda: 42, 60) == 42
    assert get_or_set("computed", lambda: 43, 60) == 42


@pytest.mark.django_db
def test_idempotent_binary_body_over_rest(rest_settings, rest, caplog):
    """What differs (docs/http.md): a response body that is not UTF-8 cannot travel as a
    JSON argument, so it is not kept; the view's answer still goes out, and the key stays
    claimed until its lease runs out, as after any failed store."""
    from atomicops import idempotent

    @idempotent(lease=30)
    def view(request):
        return HttpResponse(b"\xff\xfe binary")

    request = RequestFactory().post("/", HTTP_IDEMPOTENCY_KEY="k2", REMOTE_ADDR="10.0.0.3")
    assert view(request).content == b"\xff\xfe binary"
    assert "not UTF-8" in caplog.text
    assert view(request).status_code == 409


def test_an_async_sdk_client_works_from_several_event_loops(rest, rest_settings):
    """async_to_sync runs each call in a loop of its own: connections are per loop."""
    import asyncio

    sdk = AsyncSdkRedis(rest.url, TOKEN, allow_telemetry=False)
    assert asyncio.run(atomicops.aincr("loops", client=sdk)) == 1
    assert asyncio.run(atomicops.aincr("loops", client=sdk)) == 2


def test_answers_that_are_not_replies():
    """What each kind of HTTP answer means for a write (no server needed)."""
    from redis.exceptions import NoScriptError

    from atomicops import OutcomeUnknown, RedisUnavailable
    from atomicops.engine.ops import Context

    client = transport.RestClient("https://db.upstash.io", "t")
    write = Context("counter_incr", "k")
    one, two = [("EVALSHA", "x", 0)], [("SCRIPT LOAD", "return 1"), ("EVALSHA", "x", 0)]

    def outcome(status, body, batch=one):
        try:
            return transport.replies_of(client, batch, write, status, body)
        except transport._Lost:
            return "lost"
        except (ConfigurationError, RedisUnavailable) as exc:
            return type(exc)

    assert outcome(413, b"<html>too large</html>") is RedisUnavailable  # refused: not run
    assert outcome(429, b"slow down") is RedisUnavailable
    assert outcome(200, b"<html>a captive portal</html>") == "lost"
    assert outcome(502, b"bad gateway") == "lost"
    assert outcome(200, b'{"result": "not base64!"}') == "lost"
    assert outcome(200, b'[{"result": "T0s="}]', two) == "lost"  # one reply for two
    assert outcome(401, b'{"error": "WRONGPASS invalid or missing auth token"}') is (
        ConfigurationError
    )
    assert outcome(404, b"not found") is ConfigurationError
    [reply] = outcome(400, b'{"error": "NOSCRIPT No matching script. Please use EVAL."}')
    assert isinstance(reply, NoScriptError)
    both = outcome(400, b'{"error": "ERR failed to parse"}', two)
    assert len(both) == 2 and all(isinstance(r, Exception) for r in both)
    assert OutcomeUnknown is not RedisUnavailable


async def test_a_batch_is_one_request(rest_settings, rest, direct):
    """batch(): several calls in one /pipeline request, sync and async, SDK clients too."""
    from atomicops import abatch, batch

    atomicops.incr("warm")  # the loads
    rest.clear()
    with batch() as b:
        first = b.bounded_incr("n", 10)
        fresh = b.compare_and_set("k", None, "v")
        hit = b.fixed_window("rl", 10, 60_000)
    assert (first.result().value, fresh.result(), hit.result().allowed) == (1, True, True)
    assert len(rest.requests) == 1 and rest.requests[0].path == "/pipeline"
    async with abatch(client=AsyncSdkRedis(rest.url, TOKEN, allow_telemetry=False)) as b:
        second = b.bounded_incr("n", 10)
    assert second.result().value == 2
    assert direct.get("k") == b"v"
