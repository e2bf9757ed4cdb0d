"""A prepared script call, shared by the primitives.

A primitive validates its arguments while it builds a :class:`Call` (which script, which
keys and args, how to read the reply); :func:`run` and :func:`arun` then send it. So
sync and async share everything but the one line of I/O, and bad input raises
:class:`~atomicops.exceptions.InvalidInput` before anything is sent.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import timedelta
from typing import Any, NamedTuple

from atomicops import connection
from atomicops.exceptions import InvalidInput
from atomicops.keys import KeyLike, resolve_key, text
from atomicops.registry import registry

# The largest integer a Lua number (a double) holds exactly, and every integer below it.
MAX_EXACT = 2**53 - 1

TTL = int | float | timedelta | None


class Call(NamedTuple):
    """One prepared script call: which script, with what, and how to read its reply."""

    script: str
    keys: list[Any]
    args: list[Any]
    interpret: Callable[[Any], Any]


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


# A Call's keys and args were validated while it was built, so the registry's generic
# per-argument check is skipped: it would cost every hit a few microseconds for nothing.
def run(call: Call, client: Any) -> Any:
    _no_pipeline(call, client)
    reply = registry.get(call.script)._execute(call.keys, call.args, client)
    return call.interpret(reply)


async def arun(call: Call, client: Any) -> Any:
    _no_pipeline(call, client)
    reply = await registry.get(call.script)._aexecute(call.keys, call.args, client)
    return call.interpret(reply)
