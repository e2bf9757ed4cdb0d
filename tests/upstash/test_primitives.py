"""Every primitive over Upstash's REST API, sync and async, and at most once under faults.

The primitives are :data:`tests.faults.catalogue.PRIMITIVES` (what the RESP fault tests
run), each on atomicops' own REST client (from ``ATOMICOPS["REST_URL"]``) and on the
official SDK's client passed as ``client=``. What was applied is read from the Redis
behind the local REST server, never from the client.

Faults (:meth:`tests.upstash.server.RestServer.inject`) hit the request carrying the
script: its response dropped after it ran, delayed past the client's timeout, or a 502
before it ran; and a REST URL nothing listens on. A write must then raise
:class:`OutcomeUnknown` (sent, no answer) or :class:`RedisUnavailable` (never left),
be applied at most once, and the next call must work. The SDK is built with its default
retry (one, after 3 s): if atomicops went through it, a dropped write would be applied
twice and the test would take seconds.
"""

from __future__ import annotations

import itertools

import pytest
from upstash_redis import Redis as SdkRedis
from upstash_redis.asyncio import Redis as AsyncSdkRedis

from atomicops import OutcomeUnknown, RedisUnavailable
from atomicops.engine import connection
from atomicops.scripts.registry import registry
from tests.faults.catalogue import BY_NAME, PRIMITIVES, describe, run_case, user_scripts
from tests.servers import free_port
from tests.upstash.server import TOKEN

pytestmark = [pytest.mark.real]

SCRIPT_COMMANDS = {"EVALSHA", "EVALSHA_RO", "EVAL", "EVAL_RO"}
# The calls' read timeout when a response is delayed past it; everything else gets a
# generous one (a loaded CI machine must not time out by itself).
TIMEOUT = 0.4
_keys = itertools.count()


def _carries_script(commands):
    return any(str(command[0]).upper() in SCRIPT_COMMANDS for command in commands)


def _client(who, mode, rest):
    if who == "atomicops":
        return None  # built from ATOMICOPS["REST_URL"]
    cls = SdkRedis if mode == "sync" else AsyncSdkRedis
    return cls(rest.url, TOKEN, allow_telemetry=False)  # the SDK's default retry is on


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("who", ["atomicops", "sdk"])
async def test_every_primitive_over_rest(rest, direct, rest_settings, who, mode):
    client = _client(who, mode, rest)
    failures = []
    for primitive in PRIMITIVES:
        key = f"rest:{primitive.name}:{next(_keys)}"
        primitive.setup(direct, key)
        outcome = await run_case(primitive, key, client, mode)
        applied = primitive.applied(direct, key)
        expected = 0 if not primitive.write else 1
        if isinstance(outcome, BaseException) or not primitive.ok(outcome) or applied != expected:
            failures.append(f"{primitive.name}: {describe(outcome)}, applied {applied}")
    assert not failures
    # One request per call once the scripts are loaded: the first call carried the loads.
    per_call = [len(names) for names in rest.names()]
    assert len(per_call) == len(PRIMITIVES), rest.names()
    assert rest.connections == 1  # keep-alive: every request on one connection


async def test_noscript_fallback_counts_requests(rest, direct, rest_settings):
    import atomicops

    atomicops.bounded_incr("n", 10)  # loads every script with the call: one request
    atomicops.bounded_incr("n", 10)
    assert [names[-1] for names in rest.names()] == ["EVALSHA", "EVALSHA"]
    assert rest.names()[0].count("SCRIPT LOAD") > 5
    assert len(rest.requests) == 2 and rest.requests[0].path == "/pipeline"
    direct.script_flush()
    rest.clear()
    assert atomicops.bounded_incr("n", 10).value == 3
    names = rest.names()
    assert len(names) == 2  # EVALSHA -> NOSCRIPT, then one /pipeline: every load, then EVAL
    assert names[0] == ["EVALSHA"]
    assert names[1][-1] == "EVAL" and names[1].count("SCRIPT LOAD") == len(names[1]) - 1
    rest.clear()
    assert (await atomicops.abounded_incr("n", 10)).value == 4
    assert [names[-1] for names in rest.names()] == ["EVALSHA"]  # async client: its own loads
    rest.clear()
    assert atomicops.get_counter("n") == 4
    assert rest.names() == [["EVALSHA_RO"]]  # a read-only script runs read-only


FAULTS = {
    # fault: (what a write raises, how often it was applied)
    "drop": (OutcomeUnknown, 1),
    "delay": (OutcomeUnknown, 1),
    "502": (OutcomeUnknown, 0),  # a gateway answered: the request may have reached Redis
    "down": (RedisUnavailable, 0),
}


@pytest.mark.faults
@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("fault", list(FAULTS))
async def test_at_most_once_under_faults(rest, direct, settings, fault, mode):
    url = rest.url if fault != "down" else f"http://127.0.0.1:{free_port()}"
    settings.ATOMICOPS = {
        "REST_URL": url,
        "REST_TOKEN": TOKEN,
        "LOAD_ON_STARTUP": False,
        "STATS_FLUSH_INTERVAL": 0,
        "SOCKET_TIMEOUT": 3.0,
        # What each fault is to a caller, met once: riding through them with a deadline
        # is tests/faults/test_retry.py's (a server that is down would cost every
        # primitive here the default 2 s).
        "RETRY_DEADLINE_MS": 0,
    }
    raises, applied_once = FAULTS[fault]
    if fault != "down":
        # Loaded first, so each call is a lone EVALSHA: the request that meets the fault
        # is the call itself, and no call carries the loads again after a lost reply.
        if mode == "sync":
            registry.load_all()
            user_scripts.load_all()
        else:  # the async client keeps its own record of what the server has
            await registry.aload_all()
            await user_scripts.aload_all()
    if fault == "delay":
        # Only the calls wait briefly for their answer; the loads above had time.
        own = connection.get_client() if mode == "sync" else connection.get_async_client()
        own.extensions["timeout"]["read"] = TIMEOUT
    failures = []
    for primitive in PRIMITIVES:
        key = f"fault:{primitive.name}:{next(_keys)}"
        primitive.setup(direct, key)
        if fault != "down":
            rest.inject(fault, _carries_script, seconds=TIMEOUT * 3)
        outcome = await run_case(primitive, key, None, mode)
        applied = primitive.applied(direct, key)
        if not primitive.write:
            # Read-only: sent once more after a lost answer, so it may succeed.
            if not (isinstance(outcome, RedisUnavailable) or primitive.ok(outcome)):
                failures.append(f"{primitive.name}: {describe(outcome)}")
            continue
        if type(outcome) is not raises or applied != applied_once:
            failures.append(f"{primitive.name}: {describe(outcome)}, applied {applied}")
    assert not failures
    if fault != "down":
        # Nothing re-sent behind the caller's back, and the next call works.
        primitive = BY_NAME["incr"]
        key = f"after:{next(_keys)}"
        assert primitive.ok(await run_case(primitive, key, None, mode))
        assert primitive.applied(direct, key) == 1


@pytest.mark.faults
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_sdk_client_is_never_retried(rest, direct, rest_settings, mode):
    """The SDK's own retry would apply a dropped write twice (test_sdk_fidelity measures
    it); through atomicops the write raises OutcomeUnknown and is applied once."""
    client = _client("sdk", mode, rest)
    failures = []
    for primitive in PRIMITIVES:
        if not primitive.write:
            continue
        key = f"sdk-drop:{primitive.name}:{next(_keys)}"
        primitive.setup(direct, key)
        rest.inject("drop", _carries_script)
        outcome = await run_case(primitive, key, client, mode)
        applied = primitive.applied(direct, key)
        if type(outcome) is not OutcomeUnknown or applied != 1:
            failures.append(f"{primitive.name}: {describe(outcome)}, applied {applied}")
    assert not failures
