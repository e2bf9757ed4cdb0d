"""Every primitive, sync and async, through a proxy that breaks the network on purpose.

The client talks to a real server through :class:`tests.faultproxy.FaultProxy`; one
batch that carries a script meets one fault (see that module): its reply dropped after
it ran, the connection reset before it reached the server, its reply delayed past the
client's socket timeout (0.3 s), or a half-open connection that only a socket timeout
ends; or the server is unreachable altogether (``down``). For each:

* a typed error: :class:`RedisUnavailable` when nothing was applied, never
  :class:`OutcomeUnknown` when nothing can have been (``down``), and
  :class:`OutcomeUnknown` when a write reached the server and ran;
* applied at most once, read from the server's data directly (and still once after the
  next call: nothing is re-sent behind the caller's back);
* the next call on the same client works.

Read-only calls (``get_counter``) are sent once more on a fresh connection, so they may
also simply succeed. Both client kinds run: the one atomicops builds from its settings
(redis-py's retry off), and a user's redis-py client with redis-py's default retries,
which atomicops must not let re-send a write.
"""

from __future__ import annotations

import itertools

import pytest
import redis
import redis.asyncio
import redis.asyncio.retry
import redis.retry
from redis.backoff import NoBackoff

from atomicops import OutcomeUnknown, RedisUnavailable
from tests.conftest import REAL_KINDS
from tests.faultproxy import FaultProxy
from tests.faults.catalogue import BY_NAME, PRIMITIVES, describe, run_case
from tests.faults.conftest import binary_for
from tests.faults.servers import OwnServer
from tests.servers import available_binaries

pytestmark = [pytest.mark.faults, pytest.mark.real]

TIMEOUT = 0.3
FAULTS = ("drop", "reset", "delay", "half_open", "down")
# What a write's call must raise under each fault, and how often it may have run.
RAISES = {
    "drop": OutcomeUnknown,  # it ran: the caller must be told the outcome is unknown
    "delay": OutcomeUnknown,
    "reset": RedisUnavailable,  # did not run; OutcomeUnknown allowed: the client cannot tell
    "half_open": RedisUnavailable,
    "down": RedisUnavailable,  # nothing could even be written: never OutcomeUnknown
}
APPLIED = {"drop": 1, "delay": 1, "reset": 0, "half_open": 0, "down": 0}
SCENARIOS = {
    "drop": "f. proxy: reply dropped after the write ran, then connection closed",
    "reset": "f. proxy: connection reset before the write reached the server",
    "delay": f"f. proxy: reply delayed past the socket timeout ({TIMEOUT} s)",
    "half_open": "f. proxy: half-open connection (only the socket timeout ends it)",
    "down": "f. proxy: server unreachable (every connection reset)",
}
_keys = itertools.count()


@pytest.fixture(scope="module")
def proxied():
    """One server (redis-server, else valkey-server) behind one proxy for the module."""
    kind = next((k for k in REAL_KINDS if k in available_binaries()), REAL_KINDS[0])
    server = OwnServer(kind, binary_for(kind)).start()
    proxy = FaultProxy("127.0.0.1", server.port).start()
    yield kind, server, proxy
    proxy.close()
    server.remove()


@pytest.fixture
def through_proxy(proxied, settings):
    kind, server, proxy = proxied
    settings.ATOMICOPS = {"URL": proxy.url, "LOAD_ON_STARTUP": False, "SOCKET_TIMEOUT": TIMEOUT}
    raw = server.client()
    yield kind, proxy, raw
    proxy.disarm()
    proxy.up()
    raw.close()


def user_client(port: int, mode: str, fault: str):
    """A user's client: redis-py's defaults (retries included) and a socket timeout.

    Under ``down`` its retries keep their number (3) but lose their backoff: redis-py
    would otherwise sleep about 3 s reconnecting to a proxy that resets everything.
    """
    options: dict = {"socket_timeout": TIMEOUT}
    if fault == "down":
        retry = redis.retry.Retry if mode == "sync" else redis.asyncio.retry.Retry
        options["retry"] = retry(NoBackoff(), 3)
    if mode == "sync":
        return redis.Redis(port=port, **options)
    return redis.asyncio.Redis(port=port, **options)


async def close(client) -> None:
    if isinstance(client, redis.asyncio.Redis):
        await client.aclose()
    elif client is not None:
        client.close()


def check(primitive, fault: str, outcome, applied) -> list[str]:
    problems = []
    if not primitive.write:
        if isinstance(outcome, OutcomeUnknown):
            problems.append(f"a read raised OutcomeUnknown: {describe(outcome)}")
        elif isinstance(outcome, Exception):
            if not isinstance(outcome, RedisUnavailable):
                problems.append(f"untyped error {describe(outcome)}")
        elif not primitive.ok(outcome):
            problems.append(f"wrong result after a retried read: {describe(outcome)}")
        if applied != 0:
            problems.append(f"a read changed data: {applied}")
        return problems
    expected = RAISES[fault]
    if not isinstance(outcome, expected):
        problems.append(f"expected {expected.__name__}, {describe(outcome)}")
    elif fault == "down" and isinstance(outcome, OutcomeUnknown):
        problems.append(f"nothing could be written, yet {describe(outcome)}")
    if applied != APPLIED[fault]:
        problems.append(f"applied {applied} times, expected {APPLIED[fault]}")
    return problems


async def provoke(proxy: FaultProxy, fault: str, primitive, key: str, client, mode: str):
    if fault == "down":
        proxy.down()
        try:
            return await run_case(primitive, key, client, mode)
        finally:
            proxy.up()
    proxy.arm(fault)
    outcome = await run_case(primitive, key, client, mode)
    # drop/delay: the server's replies came back to the proxy, so the data is final.
    assert proxy.wait_fired(), f"the {fault} fault never fired: the call sent no script"
    return outcome


@pytest.mark.parametrize("who", ["atomicops", "user"])
@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("primitive", PRIMITIVES, ids=[p.name for p in PRIMITIVES])
@pytest.mark.parametrize("fault", FAULTS)
async def test_fault(through_proxy, fault, primitive, mode, who, figures):
    kind, proxy, raw = through_proxy
    client = None if who == "atomicops" else user_client(proxy.port, mode, fault)
    key = f"faults:proxy:{next(_keys)}"
    after_key = f"{key}:next"
    try:
        # Warm up: connected, scripts loaded; the fault then hits the call's own batch.
        warm = await run_case(BY_NAME["incr"], f"{key}:warm", client, mode)
        assert warm == 1, f"warm-up through the proxy failed: {describe(warm)}"
        primitive.setup(raw, key)
        primitive.setup(raw, after_key)
        outcome = await provoke(proxy, fault, primitive, key, client, mode)
        applied = primitive.applied(raw, key)
        problems = check(primitive, fault, outcome, applied)

        following = await run_case(primitive, after_key, client, mode)
        if isinstance(following, Exception) or not primitive.ok(following):
            problems.append(f"the next call on the same client {describe(following)}")
        again = primitive.applied(raw, key)
        if again != applied:
            problems.append(f"applied {applied} times at first, {again} later: re-sent")
    finally:
        await close(client)

    figures(
        SCENARIOS[fault],
        kind,
        error=type(outcome).__name__ if isinstance(outcome, Exception) else "none: answered",
        applied=applied,
    )
    assert not problems, f"{primitive.name} {mode} {who} under {fault}: " + "; ".join(problems)


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("fault", FAULTS)
async def test_fault_on_a_fresh_clients_first_call(through_proxy, fault, mode, figures):
    """The first call of a client carries SCRIPT LOAD of every script with the write."""
    kind, proxy, raw = through_proxy
    primitive = BY_NAME["compare_and_set"]
    key = f"faults:proxy:{next(_keys)}"
    client = user_client(proxy.port, mode, fault)
    try:
        outcome = await provoke(proxy, fault, primitive, key, client, mode)
        applied = primitive.applied(raw, key)
        problems = check(primitive, fault, outcome, applied)
        following = await run_case(primitive, f"{key}:next", client, mode)
        if isinstance(following, Exception) or not primitive.ok(following):
            problems.append(f"the next call on the same client {describe(following)}")
    finally:
        await close(client)
    figures(
        SCENARIOS[fault],
        kind,
        error=type(outcome).__name__ if isinstance(outcome, Exception) else "none: answered",
        applied=applied,
    )
    assert not problems, f"first call, {mode}, under {fault}: " + "; ".join(problems)
