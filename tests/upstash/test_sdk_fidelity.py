"""The local REST server answers the official upstash-redis SDK as Upstash would.

If the SDK, sync and async, gets the replies it expects from the local server, the
atomicops transport tests that use the same server test against the protocol, not
against a private dialect. The last test measures the SDK's retry on a lost response.
"""

from __future__ import annotations

import hashlib

import pytest
from upstash_redis import Redis
from upstash_redis.asyncio import Redis as AsyncRedis
from upstash_redis.errors import UpstashError

from tests.upstash.server import READONLY_TOKEN, TOKEN

SCRIPT = "local v = redis.call('GET', KEYS[1]) if v then return v end return ARGV[1]"
SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()
TEXT = "Grüße, ✓"  # not ASCII: base64 mode must round-trip UTF-8


def test_sdk_sync_commands(rest, direct):
    sdk = Redis(rest.url, TOKEN, rest_retries=0, allow_telemetry=False)
    assert sdk.set("k", "v") is True
    assert sdk.get("k") == "v"
    assert sdk.get("missing") is None
    assert sdk.incr("n") == 1
    assert sdk.eval(SCRIPT, keys=["k"], args=["d"]) == "v"
    assert sdk.eval(SCRIPT, keys=["other"], args=["d"]) == "d"
    assert sdk.script_load(SCRIPT) == SHA
    assert sdk.script_exists(SHA, "0" * 40) == [True, False]
    assert sdk.evalsha(SHA, keys=["k"], args=["d"]) == "v"
    with pytest.raises(UpstashError, match="NOSCRIPT"):
        sdk.evalsha("0" * 40, keys=[], args=[])
    sdk.set("bin", TEXT)
    assert sdk.get("bin") == TEXT
    assert direct.get("bin") == TEXT.encode()

    pipe = sdk.pipeline()
    pipe.set("p", "1")
    pipe.incr("p")
    pipe.get("p")
    assert pipe.exec() == [True, 2, "2"]

    tx = sdk.multi()
    tx.incr("t")
    tx.incr("t")
    assert tx.exec() == [1, 2]
    assert direct.get("t") == b"2"
    assert rest.requests[-1].path == "/multi-exec"

    with pytest.raises(UpstashError, match="WRONGPASS"):
        Redis(rest.url, "wrong", rest_retries=0, allow_telemetry=False).get("k")


def test_sdk_readonly_token(rest, direct):
    direct.set("k", "v")
    sdk = Redis(rest.url, READONLY_TOKEN, rest_retries=0, allow_telemetry=False)
    assert sdk.get("k") == "v"
    with pytest.raises(UpstashError, match="NOPERM"):
        sdk.set("k", "w")
    with pytest.raises(UpstashError, match="NOPERM"):
        sdk.eval(SCRIPT, keys=["k"], args=["d"])
    assert sdk.eval_ro(SCRIPT, keys=["k"], args=["d"]) == "v"
    assert direct.get("k") == b"v"


async def test_sdk_async_commands(rest, direct):
    sdk = AsyncRedis(rest.url, TOKEN, rest_retries=0, allow_telemetry=False)
    try:
        assert await sdk.set("k", TEXT) is True
        assert await sdk.get("k") == TEXT
        assert await sdk.eval(SCRIPT, keys=["k"], args=["d"]) == TEXT
        assert await sdk.script_load(SCRIPT) == SHA
        assert await sdk.evalsha(SHA, keys=["x"], args=["d"]) == "d"
        pipe = sdk.pipeline()
        pipe.incr("n")
        pipe.incrby("n", 5)
        assert await pipe.exec() == [1, 6]
        tx = sdk.multi()
        tx.set("t", "a")
        tx.get("t")
        assert await tx.exec() == [True, "a"]
        with pytest.raises(UpstashError, match="WRONGPASS"):
            await AsyncRedis(rest.url, "wrong", rest_retries=0, allow_telemetry=False).get("k")
    finally:
        await sdk.close()


def test_sdk_retry_applies_a_write_twice_when_the_response_is_lost(rest, direct):
    """Measured: the SDK's default retry (one, after ``rest_retry_interval``) re-sends a
    request whose response was lost, so a write is applied twice. atomicops never uses
    the SDK's request path (see tests/upstash/test_transport.py). The interval is
    shortened from its default 3 s; the behaviour does not depend on it."""
    sdk = Redis(rest.url, TOKEN, rest_retries=1, rest_retry_interval=0.01, allow_telemetry=False)
    rest.inject("drop", lambda commands: commands[0][0].upper() == "INCR")
    assert sdk.incr("counter") == 2  # the caller asked for one increment
    assert direct.get("counter") == b"2"
    assert [names for names in rest.names() if names == ["INCR"]] == [["INCR"], ["INCR"]]
