"""Prepared script calls, shared by the primitives.

A primitive validates its arguments while it builds a :class:`~atomicops.engine.ops.Call`
(which script, which keys and args, how to read the reply); :func:`run` and :func:`arun`
then send it through the engine's runners. So sync and async share everything but the
I/O, and bad input raises :class:`~atomicops.exceptions.InvalidInput` before anything is
sent.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from atomicops import connection
from atomicops.engine import run as engine_run
from atomicops.engine.ops import Call, Flow, text
from atomicops.exceptions import InvalidInput
from atomicops.keys import KeyLike, resolve_key
from atomicops.registry import registry

# The largest integer a Lua number (a double) holds exactly, and every integer below it.
MAX_EXACT = 2**53 - 1

TTL = int | float | timedelta | None


def resolve(key: KeyLike) -> tuple[str | bytes, str]:
    """The resolved key and its text for messages."""
    resolved = resolve_key(key)
    return resolved, text(resolved)


def ttl_ms(ttl: TTL, key: str) -> int:
    """``ttl`` (seconds or a timedelta, None for none) as whole milliseconds; 0 = none."""
    if ttl is None:
        return 0
    seconds = ttl.total_seconds() if isinstance(ttl, timedelta) else ttl
    # seconds != seconds is NaN: math.isnan and math.isfinite overflow on a huge int.
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, (int, float))
        or seconds != seconds
        or seconds == math.inf
        or seconds <= 0
    ):
        raise InvalidInput(
            f"key {key!r}: ttl must be a number of seconds > 0 or a positive timedelta, "
            f"got {ttl!r}",
            key=key,
        )
    # Checked before multiplying: 1e308 * 1000 is inf, and ceil(inf) an OverflowError.
    if seconds > MAX_EXACT / 1000:
        raise InvalidInput(
            f"key {key!r}: ttl {ttl!r} is too large (at most {MAX_EXACT // 1000} seconds)", key=key
        )
    # Round up: a positive TTL below a millisecond must not become "no TTL".
    return math.ceil(seconds * 1000)


def _no_pipeline(call: Call, client: Any) -> None:
    if client is not None and connection.is_pipeline(client):
        # The reply is needed to build the result; queue the script itself instead:
        # registry.get(name)(keys=..., args=..., client=pipe).
        raise InvalidInput(
            f"key {text(call.keys[0])!r}: pass a client, not a pipeline",
            key=text(call.keys[0]),
        )


def call_flow(call: Call, client: Any) -> Flow[Any]:
    """``call`` as a flow: its script's round trips, then its reply read by ``interpret``."""
    reply = yield from registry.get(call.script).flow(call.keys, call.args, client)
    return call.interpret(reply)


def run(call: Call, client: Any) -> Any:
    """Send ``call`` now (sync); ``client`` None means the configured one."""
    _no_pipeline(call, client)
    return engine_run.run(call_flow(call, connection.get_client(client)))


async def arun(call: Call, client: Any) -> Any:
    """The async twin of :func:`run`."""
    _no_pipeline(call, client)
    return await engine_run.arun(call_flow(call, connection.get_async_client(client)))
