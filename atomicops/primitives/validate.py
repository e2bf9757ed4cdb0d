"""One validator per kind of argument: whole numbers, TTLs, leases, timeouts.

Each raises :class:`~atomicops.exceptions.InvalidInput` naming the key before anything
is sent, and keeps every number within what a Lua number (a double) holds exactly, so a
script never sees a value it would round or print as ``1e+17``.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from atomicops.exceptions import InvalidInput

# The largest integer a Lua number (a double) holds exactly, and every integer below it.
MAX_EXACT = 2**53 - 1
# The longest lease, in ms (about 142,000 years): the scripts add it to the server
# clock, and the sum must stay exact in a Lua number. The scripts check it too, before
# any write, so a lock is never left held without an expiry.
MAX_LEASE_MS = 2**52

TTL = int | float | timedelta | None


def whole(value: Any, what: str, *, where: str, key: str | None, minimum: int | None = 1) -> int:
    """``value`` as an int in [``minimum``, 2**53 - 1]; ``minimum`` None is -(2**53 - 1).

    ``where`` starts the message ("counter 'likes'", "rate limit on key 'k'").
    """
    if type(value) is int and (minimum is None or minimum <= value) and value <= MAX_EXACT:
        if value >= -MAX_EXACT:  # every hit passes here: quick
            return value
    # bool is an int subclass, but True as an amount is a bug, not a 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{where}: {what} must be an integer, got {value!r}", key=key)
    lowest = -MAX_EXACT if minimum is None else minimum
    if value < lowest:
        raise InvalidInput(f"{where}: {what} must be >= {lowest}, got {value}", key=key)
    raise InvalidInput(
        f"{where}: {what} {value} is beyond 2**53 - 1, the largest integer a Lua number "
        "holds exactly",
        key=key,
    )


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


def seconds(value: Any, what: str, key: str | None, *, zero_ok: bool) -> float:
    """A number of seconds >= 0 (> 0 unless ``zero_ok``); huge values become ``inf``."""
    # value != value is NaN; math.isnan and float() would overflow on a huge int.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise InvalidInput(f"{what} must be a number of seconds, got {value!r}", key=key)
    if value < 0 or (value == 0 and not zero_ok):
        bound = ">= 0" if zero_ok else "> 0"
        raise InvalidInput(f"{what} must be {bound} seconds, got {value!r}", key=key)
    return float(value) if value < 1e300 else math.inf


def lease_ms(ttl: Any, key: str | None = None) -> int:
    """A lease in seconds (float allowed) -> whole milliseconds in [1, 2**52]."""
    value = seconds(ttl, "ttl", key, zero_ok=False)
    if math.isinf(value):
        raise InvalidInput("ttl must be finite: a lease that never ends is not a lease", key=key)
    if value > MAX_LEASE_MS / 1000:
        raise InvalidInput(
            f"ttl {ttl!r} is too long: a lease is at most {MAX_LEASE_MS // 1000} seconds", key=key
        )
    return max(1, math.ceil(value * 1000))


def timeout(value: Any, key: str | None) -> float | None:
    """A wait in seconds (0 = do not wait); None or infinity = no bound."""
    if value is None:
        return None
    found = seconds(value, "timeout", key, zero_ok=True)
    return None if math.isinf(found) else found
