"""The script registry: SHAs, registration, discovery, EVALSHA hits and the fallback."""

from __future__ import annotations

import hashlib
import logging

import pytest
import redis

from atomicops import (
    InvalidInput,
    ReadOnlyViolation,
    RegistryError,
    Script,
    ScriptCompileError,
    ScriptError,
    registry,
)
from atomicops.exceptions import DataError

INCR = "return redis.call('INCRBY', KEYS[1], ARGV[1])"


def commandstats(client: redis.Redis) -> dict[str, int]:
    """Calls per command on a real server, e.g. {'evalsha': 3, 'eval': 1}."""
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): v["calls"] for name, v in stats.items()}


def test_sha_is_computed_locally(fresh_registry):
    script = fresh_registry.register("incr", INCR)
    assert script.sha == hashlib.sha1(INCR.encode()).hexdigest()


def test_sha_matches_script_load(real_client, fresh_registry):
    script = fresh_registry.register("incr", INCR)
    assert real_client.script_load(INCR) == script.sha
    assert fresh_registry.load_all() == {"incr": script.sha}


def test_same_source_again_is_a_no_op_and_another_source_raises(fresh_registry):
    first = fresh_registry.register("incr", INCR)
    assert fresh_registry.register("incr", INCR) is first
    with pytest.raises(RegistryError, match="already registered with another source") as info:
        fresh_registry.register("incr", INCR + " ")
    assert info.value.script == "incr"


@pytest.mark.parametrize("name", ["", "has space", "1starts-with-digit", None])
def test_bad_names_are_refused(fresh_registry, name):
    with pytest.raises(RegistryError):
        fresh_registry.register(name, INCR)


def test_lookup_membership_and_iteration(fresh_registry):
    a = fresh_registry.register("a", "return 1")
    b = fresh_registry.register("b", "return 2")
    assert fresh_registry.get("a") is a
    assert "b" in fresh_registry and "c" not in fresh_registry
    assert list(fresh_registry) == [a, b]
    assert len(fresh_registry) == 2
    with pytest.raises(RegistryError, match="no script named 'c'"):
        fresh_registry.get("c")


def test_discovery_reads_app_lua_folders_and_headers():
    script = registry.get("testapp_echo")
    assert isinstance(script, Script)
    assert script.app == "testapp"
    assert script.readonly is True
    assert script.keys == ("target",)
    assert script.args == ("word",)
    assert script.probe == ("hello",)
    assert script.description.startswith("Return the key")
    assert script.origin.endswith("tests/testapp/lua/testapp_echo.lua")


def test_every_call_is_counted_and_first_call_is_an_evalsha_hit(backend, fresh_registry):
    kind, client = backend
    script = fresh_registry.register("incr", INCR, keys=["counter"], args=["amount"])
    fresh_registry.register("other", "return 'other'")
    if kind != "fakeredis":
        client.config_resetstat()
    # A process's first call carries the SCRIPT LOADs, so its EVALSHA hits.
    assert script(["c"], [2]) == 2
    assert script(["c"], [3]) == 5
    assert dict(script.stats) == {"calls": 2, "fallbacks": 0, "errors": 0, "retries": 0}
    if kind != "fakeredis":
        calls = commandstats(client)
        assert calls["evalsha"] == 2
        assert "eval" not in calls
        assert calls["script|load"] == 2  # both registered scripts, once


def test_load_all_then_first_call_is_an_evalsha_hit(real_client, fresh_registry):
    script = fresh_registry.register("incr", INCR)
    shas = fresh_registry.load_all()
    assert shas == {"incr": script.sha}
    assert real_client.script_exists(script.sha) == [True]
    real_client.config_resetstat()
    assert script(["c"], [1]) == 1
    calls = commandstats(real_client)
    assert calls["evalsha"] == 1
    assert "eval" not in calls and "script|load" not in calls
    assert script.stats["fallbacks"] == 0


def test_after_script_flush_the_next_call_succeeds_with_one_fallback(backend, fresh_registry):
    kind, client = backend
    script = fresh_registry.register("incr", INCR)
    other = fresh_registry.register("other", "return 'other'")
    assert script(["c"], [1]) == 1
    client.script_flush()
    assert client.script_exists(script.sha) == [False]
    assert script(["c"], [1]) == 2
    assert script.stats["fallbacks"] == 1
    assert script(["c"], [1]) == 3
    assert script.stats["fallbacks"] == 1  # cached again
    # The fallback reloaded every script, so the others do not each pay one.
    assert client.script_exists(other.sha) == [True]
    assert other([]) == b"other"
    assert other.stats["fallbacks"] == 0


def test_survives_a_server_restart(real_server, settings, fresh_registry):
    settings.ATOMICOPS = {"URL": real_server.url}
    script = fresh_registry.register("incr", INCR)
    assert script(["c"], [1]) == 1
    real_server.restart()  # script cache and data gone, pooled connections dead
    assert script(["c"], [5]) == 5
    assert script.stats["fallbacks"] == 1


def test_pipeline_loads_missing_scripts_before_the_batch(backend, fresh_registry):
    kind, client = backend
    script = fresh_registry.register("incr", INCR)
    pipe = client.pipeline()
    assert script(["c"], [1], client=pipe) is pipe
    script(["c"], [2], client=pipe)
    assert pipe.execute() == [1, 3]
    client.script_flush()
    pipe = client.pipeline(transaction=True)
    script(["c"], [4], client=pipe)
    pipe.get("c")
    assert pipe.execute() == [7, b"7"]


def test_readonly_script_cannot_write(backend, fresh_registry, caplog):
    """The seed's case: EVAL_RO "return redis.call('SET', KEYS[1], 'x')" 1 somekey."""
    kind, client = backend
    script = fresh_registry.register(
        "sneaky", "return redis.call('SET', KEYS[1], 'x')", readonly=True
    )
    if kind == "fakeredis":
        # fakeredis has no EVALSHA_RO: atomicops degrades to EVALSHA and says so.
        with caplog.at_level(logging.WARNING, logger="atomicops"):
            script(["somekey"])
        assert "no EVALSHA_RO" in caplog.text
        return
    with pytest.raises(ReadOnlyViolation) as info:
        script(["somekey"])
    assert info.value.script == "sneaky" and info.value.key == "somekey"
    assert "Write commands are not allowed from read-only scripts" in info.value.server_message
    assert client.exists("somekey") == 0
    assert script.stats["errors"] == 1


def test_readonly_script_reads_with_evalsha_ro(real_client, fresh_registry):
    script = fresh_registry.register("peek", "return redis.call('GET', KEYS[1])", readonly=True)
    real_client.set("k", "v")
    real_client.config_resetstat()
    assert script(["k"]) == b"v"
    assert commandstats(real_client).get("evalsha_ro") == 1


def test_compile_error_names_the_script_and_quotes_redis(backend, fresh_registry):
    kind, client = backend
    broken = fresh_registry.register("broken", "return (")
    good = fresh_registry.register("good", "return 1")
    with pytest.raises(ScriptCompileError) as info:
        broken([])
    assert "'broken'" in str(info.value)
    assert info.value.script == "broken"
    assert "near '<eof>'" in info.value.server_message
    # One broken script does not stop the others from loading or running.
    assert good([]) == 1
    if kind == "fakeredis":
        return  # fakeredis' SCRIPT LOAD stores any text; it compiles only when run
    with pytest.raises(ScriptCompileError, match="'broken'"):
        fresh_registry.load_all()
    assert client.script_exists(good.sha) == [True]


def test_runtime_errors_are_typed_and_name_the_key(backend, fresh_registry):
    kind, client = backend
    boom = fresh_registry.register("boom", "error('boom')")
    with pytest.raises(ScriptError, match="boom") as info:
        boom(["somewhere"])
    assert info.value.key == "somewhere"
    client.rpush("alist", "x")
    incr = fresh_registry.register("incr", INCR)
    with pytest.raises(DataError, match="WRONGTYPE|wrong kind") as info:
        incr(["alist"], [1])
    assert info.value.key == "alist"
    assert client.lrange("alist", 0, -1) == [b"x"]


def test_domain_error_codes_map_to_typed_errors(backend, fresh_registry):
    script = fresh_registry.register(
        "picky", "return redis.error_reply('INVALID limit must be >= 0')"
    )
    with pytest.raises(InvalidInput, match="limit must be >= 0") as info:
        script(["k"])
    assert isinstance(info.value, ValueError)
    assert info.value.script == "picky"


def test_bad_arguments_are_refused_before_anything_is_sent(fresh_registry, real_client):
    script = fresh_registry.register("incr", INCR, keys=["counter"], args=["amount"])
    real_client.config_resetstat()
    with pytest.raises(InvalidInput, match="takes 1 keys"):
        script(["a", "b"], [1])
    with pytest.raises(InvalidInput, match="at most 1 args"):
        script(["a"], [1, 2])
    with pytest.raises(InvalidInput, match="args must be"):
        script(["a"], [None])
    with pytest.raises(InvalidInput, match="args must be"):
        script(["a"], [True])
    with pytest.raises(InvalidInput, match="keys must be"):
        script([""], [1])
    assert "evalsha" not in commandstats(real_client)


async def test_async_calls_share_the_script_and_fall_back(backend, fresh_registry):
    kind, client = backend
    script = fresh_registry.register("incr", INCR)
    assert await script.acall(["c"], [2]) == 2
    client.script_flush()
    assert await script.acall(["c"], [3]) == 5
    assert script.stats["fallbacks"] == 1
    assert script(["c"], [1]) == 6  # and the sync path on the same registry


async def test_async_pipeline(real_server, fresh_registry):
    import redis.asyncio

    script = fresh_registry.register("incr", INCR)
    client = redis.asyncio.Redis.from_url(real_server.url)
    try:
        pipe = client.pipeline()
        script(["c"], [1], client=pipe)
        script(["c"], [1], client=pipe)
        assert await pipe.execute() == [1, 2]
    finally:
        await client.aclose()
