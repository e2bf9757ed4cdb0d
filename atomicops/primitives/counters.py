"""Counters: bounded increments and decrements, plain increments, exact float increments.

Each operation is one Lua script, so one round trip when the server has the script: the
read, the check against the bound and the write happen in one atomic step, and no
number of clients can slip an update in between (the race a GET-then-SET pipeline has).

A key is a string (used exactly as given) or an ``(instance, name)`` pair, which becomes
``<prefix>:{<app>.<model>:<pk>}:<name>`` (see :func:`atomicops.key_for`). Arguments are
checked here before anything is sent, so bad input raises
:class:`~atomicops.exceptions.InvalidInput` naming the key and changes nothing; the
scripts check them again for callers that run them directly.

Integer arguments stay within +-(2**53 - 1): Lua numbers are doubles and stop being
exact beyond that. Stored values read by :func:`incr`, :func:`get_counter` and
:func:`reset_counter` are exact over the whole signed 64-bit range (the scripts hand
back the stored text, not a Lua number).

Every function has an ``a``-prefixed async twin over ``redis.asyncio`` that runs the
same script with the same validation; only the I/O differs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from atomicops.exceptions import InvalidInput
from atomicops.primitives.calls import Call, asend, resolve, send
from atomicops.primitives.keys import KeyLike
from atomicops.primitives.validate import TTL, ttl_ms, whole

__all__ = [
    "CounterResult",
    "abounded_decr",
    "abounded_incr",
    "aget_counter",
    "aincr",
    "aincr_float",
    "areset_counter",
    "bounded_decr",
    "bounded_incr",
    "get_counter",
    "incr",
    "incr_float",
    "reset_counter",
]

BOUNDED_INCR = "counter_bounded_incr"
BOUNDED_DECR = "counter_bounded_decr"
INCR = "counter_incr"
INCR_FLOAT = "counter_incr_float"
GET = "counter_get"
RESET = "counter_reset"


@dataclass(frozen=True)
class CounterResult:
    """The outcome of a counter update.

    ``value`` is the counter after the call (unchanged when not applied), ``applied``
    whether the amount was added. ``bool(result)`` is ``applied``, so
    ``if bounded_incr(key, 10): ...`` reads as "if it was counted".
    """

    value: int
    applied: bool

    def __bool__(self) -> bool:
        return self.applied


def _int(value: Any, what: str, key: str, minimum: int | None = None) -> int:
    return whole(value, what, where=f"counter {key!r}", key=key, minimum=minimum)


def _counter_result(reply: Any) -> CounterResult:
    value, applied = reply
    return CounterResult(value=int(value), applied=bool(applied))


def bounded_incr_call(key: KeyLike, limit: int, amount: int, ttl: TTL) -> Call[CounterResult]:
    """The :func:`bounded_incr` call, prepared and checked (nothing sent): batches reuse it."""
    resolved, name = resolve(key)
    limit = _int(limit, "limit", name, minimum=0)
    amount = _int(amount, "amount", name, minimum=1)
    expiry = ttl_ms(ttl, name)
    return Call(BOUNDED_INCR, [resolved], [limit, amount, expiry], _counter_result)


def bounded_decr_call(key: KeyLike, floor: int, amount: int, ttl: TTL) -> Call[CounterResult]:
    """The :func:`bounded_decr` call, prepared and checked (nothing sent)."""
    resolved, name = resolve(key)
    floor = _int(floor, "floor", name)
    amount = _int(amount, "amount", name, minimum=1)
    expiry = ttl_ms(ttl, name)
    return Call(BOUNDED_DECR, [resolved], [floor, amount, expiry], _counter_result)


def incr_call(key: KeyLike, amount: int, ttl: TTL) -> Call[int]:
    """The :func:`incr` call, prepared and checked (nothing sent)."""
    resolved, name = resolve(key)
    amount = _int(amount, "amount", name)
    expiry = ttl_ms(ttl, name)
    return Call(INCR, [resolved], [amount, expiry])


def _float_text(value: Any, key: str) -> str:
    """``value`` as text INCRBYFLOAT reads exactly as written (no binary round trip)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise InvalidInput(
            f"counter {key!r}: amount must be an int, float or Decimal, got {value!r}", key=key
        )
    if isinstance(value, int):
        return str(value)
    # The script checks the amount as a Lua number: it must also be finite as a double.
    finite = value.is_finite() if isinstance(value, Decimal) else math.isfinite(value)
    if not finite or not math.isfinite(float(value)):
        raise InvalidInput(
            f"counter {key!r}: amount must be finite (as a double too), got {value!r}", key=key
        )
    # repr() is the shortest text that reads back as the same float: 0.1 -> "0.1".
    return repr(value) if isinstance(value, float) else str(value)


def incr_float_call(key: KeyLike, amount: int | float | Decimal, ttl: TTL) -> Call[Decimal]:
    """The :func:`incr_float` call, prepared and checked (nothing sent)."""
    resolved, name = resolve(key)
    amount_text = _float_text(amount, name)
    expiry = ttl_ms(ttl, name)
    return Call(INCR_FLOAT, [resolved], [amount_text, expiry])


def get_counter_call(key: KeyLike) -> Call[int]:
    """The :func:`get_counter` call, prepared and checked (nothing sent)."""
    resolved, _ = resolve(key)
    return Call(GET, [resolved], [])


def reset_counter_call(key: KeyLike) -> Call[int]:
    """The :func:`reset_counter` call, prepared and checked (nothing sent)."""
    resolved, _ = resolve(key)
    return Call(RESET, [resolved], [])


def bounded_incr(
    key: KeyLike, limit: int, amount: int = 1, *, ttl: TTL = None, client: Any = None
) -> CounterResult:
    """Add ``amount`` to the counter only if the result stays ``<= limit``.

    A missing counter counts as 0. Atomic and one round trip: the check and the
    ``INCRBY`` run in one script, so concurrent callers never push the counter past
    ``limit``. When not applied nothing changes and ``value`` is the current count.
    ``ttl`` (seconds or a ``timedelta``) is set when this call creates the counter;
    later calls leave the TTL alone.

    Raises :class:`InvalidInput` (``limit`` not an integer in [0, 2**53 - 1], ``amount``
    not one in [1, 2**53 - 1], ``ttl`` <= 0; nothing is sent), :class:`DataError` (the
    key holds a non-integer, another type, or a value beyond +-(2**53 - 1); unchanged),
    :class:`RedisUnavailable` / :class:`OutcomeUnknown` (server unreachable / reply lost).
    """
    return send(bounded_incr_call(key, limit, amount, ttl), client)


async def abounded_incr(
    key: KeyLike, limit: int, amount: int = 1, *, ttl: TTL = None, client: Any = None
) -> CounterResult:
    """The async twin of :func:`bounded_incr`; same script, same rules."""
    return await asend(bounded_incr_call(key, limit, amount, ttl), client)


def bounded_decr(
    key: KeyLike, floor: int, amount: int = 1, *, ttl: TTL = None, client: Any = None
) -> CounterResult:
    """Subtract ``amount`` from the counter only if the result stays ``>= floor``.

    The mirror of :func:`bounded_incr` (stock that must not go below 0:
    ``bounded_decr(key, 0)``). A missing counter counts as 0. Atomic, one round trip;
    ``ttl`` is set when this call creates the counter.

    Raises :class:`InvalidInput` (``floor`` not an integer within +-(2**53 - 1),
    ``amount`` not one in [1, 2**53 - 1], ``ttl`` <= 0), :class:`DataError`,
    :class:`RedisUnavailable` / :class:`OutcomeUnknown`, as :func:`bounded_incr`.
    """
    return send(bounded_decr_call(key, floor, amount, ttl), client)


async def abounded_decr(
    key: KeyLike, floor: int, amount: int = 1, *, ttl: TTL = None, client: Any = None
) -> CounterResult:
    """The async twin of :func:`bounded_decr`; same script, same rules."""
    return await asend(bounded_decr_call(key, floor, amount, ttl), client)


def incr(key: KeyLike, amount: int = 1, *, ttl: TTL = None, client: Any = None) -> int:
    """Add ``amount`` (negative to subtract) to the counter and return the new value.

    A missing counter counts as 0; ``ttl`` (seconds or a ``timedelta``) is set only when
    this call creates it, so a counter that keeps being incremented still expires on
    schedule. Atomic (``INCRBY`` and ``PEXPIRE`` in one script), one round trip. The
    value is exact over the whole signed 64-bit range.

    Raises :class:`InvalidInput` (``amount`` not an integer within +-(2**53 - 1), ``ttl``
    <= 0), :class:`DataError` (the key holds a non-integer or another type, or the result
    would pass the 64-bit range; unchanged), :class:`RedisUnavailable` /
    :class:`OutcomeUnknown`.
    """
    return send(incr_call(key, amount, ttl), client)


async def aincr(key: KeyLike, amount: int = 1, *, ttl: TTL = None, client: Any = None) -> int:
    """The async twin of :func:`incr`; same script, same rules."""
    return await asend(incr_call(key, amount, ttl), client)


def incr_float(
    key: KeyLike, amount: int | float | Decimal, *, ttl: TTL = None, client: Any = None
) -> Decimal:
    """Add a decimal ``amount`` with ``INCRBYFLOAT`` and return the new value exactly.

    The script returns the server's own text (``"10.6"``), read as a :class:`Decimal`; a
    Lua number would have come back truncated to ``10``. The server adds in long double
    and prints at most 17 significant digits, so ``0.1`` added three times reads
    ``0.3``. Floats are sent as their shortest ``repr``, Decimals as written. ``ttl``
    is set when this call creates the counter. Atomic, one round trip.

    Raises :class:`InvalidInput` (``amount`` not a finite int/float/Decimal, ``ttl`` <=
    0), :class:`DataError` (the key holds a non-number or another type, or the result
    would be infinite; unchanged), :class:`RedisUnavailable` / :class:`OutcomeUnknown`.
    """
    return send(incr_float_call(key, amount, ttl), client)


async def aincr_float(
    key: KeyLike, amount: int | float | Decimal, *, ttl: TTL = None, client: Any = None
) -> Decimal:
    """The async twin of :func:`incr_float`; same script, same rules."""
    return await asend(incr_float_call(key, amount, ttl), client)


def get_counter(key: KeyLike, *, client: Any = None) -> int:
    """The counter's value, 0 when it does not exist.

    A read-only script (``EVALSHA_RO`` where the server has it), one round trip.
    Raises :class:`DataError` when the key holds a non-integer or another type.
    """
    return send(get_counter_call(key), client)


async def aget_counter(key: KeyLike, *, client: Any = None) -> int:
    """The async twin of :func:`get_counter`; same script, same rules."""
    return await asend(get_counter_call(key), client)


def reset_counter(key: KeyLike, *, client: Any = None) -> int:
    """Delete the counter (it reads 0 again) and return the value it had.

    Atomic read-and-delete, one round trip: no increment made between the read and the
    delete is lost, which makes it the way to move counts into the database
    periodically. A TTL given on creation applies again to the next counter.
    Raises :class:`DataError` when the key holds a non-integer or another type (it is
    left in place).
    """
    return send(reset_counter_call(key), client)


async def areset_counter(key: KeyLike, *, client: Any = None) -> int:
    """The async twin of :func:`reset_counter`; same script, same rules."""
    return await asend(reset_counter_call(key), client)
