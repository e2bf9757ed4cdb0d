"""Compare-and-set and compare-and-delete: write only if the value is what you last saw.

The read, the comparison and the write run in one Lua script, so one round trip and no
other client's write can land in between (the basis of optimistic locking: read, compute,
``compare_and_set(key, what_i_read, what_i_computed)``, retry on False).

Values are compared byte for byte with what the server holds: ``str`` is sent as
UTF-8, ``int`` as its decimal text, ``float`` as its shortest ``repr`` and ``Decimal`` as
written, so ``compare_and_set(key, 1, 2)`` matches a key holding ``"1"``. Keys are
strings or ``(instance, name)`` pairs, as everywhere in atomicops. ``a``-prefixed twins
do the same over ``redis.asyncio``.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

from atomicops.exceptions import InvalidInput
from atomicops.primitives.calls import Call, asend, resolve, send
from atomicops.primitives.keys import KeyLike
from atomicops.primitives.validate import TTL, ttl_ms

__all__ = ["acompare_and_delete", "acompare_and_set", "compare_and_delete", "compare_and_set"]

CAS_SET = "cas_set"
CAS_DELETE = "cas_delete"

Value = str | bytes | int | float | Decimal


def _value(value: Any, what: str, key: str) -> str | bytes:
    """``value`` as the exact text it is stored and compared as."""
    if isinstance(value, (str, bytes)):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise InvalidInput(
            f"key {key!r}: {what} must be str, bytes, int, float or Decimal, got {value!r}",
            key=key,
        )
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(f"key {key!r}: {what} must be finite, got {value!r}", key=key)
        return repr(value)
    if isinstance(value, Decimal) and not value.is_finite():
        # Same rule as floats: "NaN" or "Infinity" stored as text is not a number anyone meant.
        raise InvalidInput(f"key {key!r}: {what} must be finite, got {value!r}", key=key)
    return str(value)


def compare_and_set_call(key: KeyLike, expected: Value | None, new: Value, ttl: TTL) -> Call[bool]:
    """The :func:`compare_and_set` call, prepared and checked (nothing sent): batches reuse it."""
    resolved, name = resolve(key)
    if new is None:
        raise InvalidInput(
            f"key {name!r}: new must be a value; use compare_and_delete() to remove the key",
            key=name,
        )
    args: list[Any] = [_value(new, "new", name), ttl_ms(ttl, name)]
    if expected is not None:
        # Left out, the script requires the key not to exist.
        args.append(_value(expected, "expected", name))
    return Call(CAS_SET, [resolved], args)


def compare_and_delete_call(key: KeyLike, expected: Value) -> Call[bool]:
    """The :func:`compare_and_delete` call, prepared and checked (nothing sent)."""
    resolved, name = resolve(key)
    if expected is None:
        raise InvalidInput(
            f"key {name!r}: compare_and_delete needs the value the key must hold, got None",
            key=name,
        )
    return Call(CAS_DELETE, [resolved], [_value(expected, "expected", name)])


def compare_and_set(
    key: KeyLike,
    expected: Value | None,
    new: Value,
    *,
    ttl: TTL = None,
    client: Any = None,
) -> bool:
    """Set ``key`` to ``new`` only if it holds exactly ``expected``; True if it did.

    ``expected=None`` means "only if the key does not exist". On False nothing changed.
    With ``ttl`` (seconds or a ``timedelta``) the new value gets that TTL; without, a
    replaced value keeps the TTL the key had (``SET ... KEEPTTL``) and a created one has
    none. Atomic, one round trip.

    Raises :class:`InvalidInput` (a value that is not str/bytes/int/float/Decimal,
    ``new=None``, ``ttl`` <= 0; nothing is sent), :class:`DataError` (the key holds a
    list, hash or other non-string type; unchanged), :class:`RedisUnavailable` /
    :class:`OutcomeUnknown` (server unreachable / reply lost: check before retrying).
    """
    return send(compare_and_set_call(key, expected, new, ttl), client)


async def acompare_and_set(
    key: KeyLike,
    expected: Value | None,
    new: Value,
    *,
    ttl: TTL = None,
    client: Any = None,
) -> bool:
    """The async twin of :func:`compare_and_set`; same script, same rules."""
    return await asend(compare_and_set_call(key, expected, new, ttl), client)


def compare_and_delete(key: KeyLike, expected: Value, *, client: Any = None) -> bool:
    """Delete ``key`` only if it holds exactly ``expected``; True if it did.

    Releasing something only while it is still yours (a token you wrote earlier).
    Atomic, one round trip. Raises :class:`InvalidInput` (``expected`` None or not a
    value), :class:`DataError` (the key holds a non-string type; unchanged),
    :class:`RedisUnavailable` / :class:`OutcomeUnknown`.
    """
    return send(compare_and_delete_call(key, expected), client)


async def acompare_and_delete(key: KeyLike, expected: Value, *, client: Any = None) -> bool:
    """The async twin of :func:`compare_and_delete`; same script, same rules."""
    return await asend(compare_and_delete_call(key, expected), client)
