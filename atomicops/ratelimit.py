"""Rate limits: fixed window, sliding window and token bucket, one Lua script each.

Every hit is one script call, so one round trip when the server has the script: the
read, the decision and the write happen in one atomic step, and no number of clients
can slip a hit in between. The sliding window and the token bucket read the time from
the server (``TIME``), so clients with skewed clocks still agree.

Each function takes a key (a string used as given, or an ``(instance, name)`` pair) and
returns a :class:`RateLimitResult`; ``a``-prefixed twins do the same over
``redis.asyncio``. Arguments are checked here before anything is sent, so bad input
raises :class:`~atomicops.exceptions.InvalidInput` and changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from atomicops.calls import Call, arun, resolve, run
from atomicops.engine.ops import text
from atomicops.exceptions import InvalidInput, RateLimited
from atomicops.keys import KeyLike
from atomicops.observe import rate_limit_hit
from atomicops.validate import MAX_EXACT, whole

__all__ = [
    "RateLimitResult",
    "StackedLimit",
    "afixed_window",
    "asliding_window",
    "atoken_bucket",
    "fixed_window",
    "sliding_window",
    "stack_call",
    "token_bucket",
]

FIXED_WINDOW = "ratelimit_fixed_window"
SLIDING_WINDOW = "ratelimit_sliding_window"
TOKEN_BUCKET = "ratelimit_token_bucket"
STACK = "ratelimit_stack"

# The sliding window compares prev * (window - elapsed) + (cur + amount) * window with
# limit * window (each term up to limit * window); Lua numbers are doubles, exact only
# below 2^53.
_EXACT = 2**53


# Not frozen: a frozen dataclass sets each field through object.__setattr__, which made
# building the result a measurable part of a hit (see benchmarks/bench_ratelimit.py).
@dataclass(slots=True)
class RateLimitResult:
    """The outcome of one hit.

    ``count`` is what the limit has used (fixed window: hits in this window, this one
    and rejected ones included; sliding window: the weighted estimate rounded up; token
    bucket: ``limit - remaining``). ``remaining`` is how many unit hits would be allowed
    right now, never negative. ``reset_ms`` is the time until the whole limit is
    available again, ``retry_after_ms`` the time until this same hit could be allowed
    (0 when it was), both assuming no other hits meanwhile.
    """

    allowed: bool
    count: int
    remaining: int
    reset_ms: int
    limit: int
    retry_after_ms: int
    key: str

    def raise_for_limit(self) -> RateLimitResult:
        """Return ``self`` if allowed, else raise :class:`RateLimited` carrying this result."""
        if not self.allowed:
            raise RateLimited(
                f"rate limit on key {self.key!r} reached ({self.count}/{self.limit}); "
                f"retry in {self.retry_after_ms} ms",
                result=self,
                key=self.key,
            )
        return self


def _whole(value: Any, what: str, key: str, minimum: int | None = 1) -> int:
    # Past 2**53 - 1 a window would also fail PEXPIRE after the script counted the hit.
    return whole(value, what, where=f"rate limit on key {key!r}", key=key, minimum=minimum)


def _amount(value: Any, limit: int, key: str, what: str = "amount") -> int:
    amount = _whole(value, what, key)
    if amount > limit:
        # Such a hit could never be allowed: a bug in the caller, not a rejection.
        raise InvalidInput(
            f"rate limit on key {key!r}: {what} {amount} exceeds the limit {limit}", key=key
        )
    return amount


def _counted(
    allowed: bool, count: int, reset_ms: int, retry_ms: int, limit: int, key: str
) -> RateLimitResult:
    """The result of a counting limit (``remaining`` follows from ``count``)."""
    return RateLimitResult(
        allowed=allowed,
        count=count,
        remaining=max(0, limit - count),
        reset_ms=reset_ms,
        limit=limit,
        retry_after_ms=retry_ms,
        key=key,
    )


def fixed_window_call(
    key: KeyLike, limit: int, window_ms: int, amount: int
) -> Call[RateLimitResult]:
    """The fixed window hit as a prepared :class:`Call`, arguments checked (nothing sent)."""
    resolved, name = resolve(key)
    limit = _whole(limit, "limit", name)
    window_ms = _whole(window_ms, "window_ms", name)
    amount = _amount(amount, limit, name)

    def interpret(reply: Sequence[Any]) -> RateLimitResult:
        count, ttl = reply[0], reply[1]
        allowed = count <= limit
        return _counted(allowed, count, ttl, 0 if allowed else ttl, limit, name)

    # The script only counts (as the seed's does); the limit is compared here.
    return Call(FIXED_WINDOW, [resolved], [window_ms, amount], interpret)


def sliding_window_call(
    key: KeyLike, limit: int, window_ms: int, amount: int
) -> Call[RateLimitResult]:
    """The sliding window hit as a prepared :class:`Call`, arguments checked (nothing sent)."""
    resolved, name = resolve(key)
    limit = _whole(limit, "limit", name)
    window_ms = _whole(window_ms, "window_ms", name)
    amount = _amount(amount, limit, name)
    if 4 * limit * window_ms >= _EXACT:
        raise InvalidInput(
            f"rate limit on key {name!r}: limit * window_ms must stay below 2**51 "
            "(the script's arithmetic is exact only there)",
            key=name,
        )

    def interpret(reply: Sequence[Any]) -> RateLimitResult:
        allowed, count, reset, retry = reply[0], reply[1], reply[2], reply[3]
        return _counted(bool(allowed), count, reset, retry, limit, name)

    return Call(SLIDING_WINDOW, [resolved], [limit, window_ms, amount], interpret)


def token_bucket_call(
    key: KeyLike, capacity: int, refill_rate: float, cost: int
) -> Call[RateLimitResult]:
    """The token bucket hit as a prepared :class:`Call`, arguments checked (nothing sent)."""
    resolved, name = resolve(key)
    capacity = _whole(capacity, "capacity", name)
    # `not 0 < rate <= MAX` also turns away NaN, infinity and ints past float's range.
    if (
        isinstance(refill_rate, bool)
        or not isinstance(refill_rate, (int, float))
        or not 0 < refill_rate <= MAX_EXACT
    ):
        raise InvalidInput(
            f"rate limit on key {name!r}: refill_rate must be a number > 0 and <= 2**53 - 1 "
            f"(tokens per second), got {refill_rate!r}",
            key=name,
        )
    cost = _whole(cost, "cost", name, minimum=None)
    if cost > capacity:
        raise InvalidInput(
            f"rate limit on key {name!r}: cost {cost} exceeds the capacity {capacity}", key=name
        )
    if capacity * 1000 / refill_rate > MAX_EXACT:
        # The bucket's expiry is its time to fill up, in ms; PEXPIRE would refuse it
        # after the script had already taken the tokens.
        raise InvalidInput(
            f"rate limit on key {name!r}: refill_rate {refill_rate!r} is so slow that "
            f"filling {capacity} tokens takes over 2**53 ms",
            key=name,
        )
    # repr() keeps every digit of a float; Lua's tonumber reads it back exactly.
    rate_arg = refill_rate if isinstance(refill_rate, int) else repr(float(refill_rate))

    def interpret(reply: Sequence[Any]) -> RateLimitResult:
        allowed, remaining, reset, retry = reply[0], reply[1], reply[2], reply[3]
        return RateLimitResult(
            allowed=bool(allowed),
            count=capacity - remaining,
            remaining=remaining,
            reset_ms=reset,
            limit=capacity,
            retry_after_ms=retry,
            key=name,
        )

    return Call(TOKEN_BUCKET, [resolved], [capacity, rate_arg, cost], interpret)


class StackedLimit(NamedTuple):
    """One limit of a stack decided by :func:`stack_call`: the arguments of its function."""

    algorithm: str  # "fixed_window", "sliding_window" or "token_bucket"
    key: KeyLike
    limit: int  # a token bucket's capacity
    period: float  # window_ms, or a token bucket's refill_rate (tokens per second)
    amount: int = 1  # a token bucket's cost


_BUILDERS = {
    "fixed_window": ("f", fixed_window_call),
    "sliding_window": ("s", sliding_window_call),
    "token_bucket": ("t", token_bucket_call),
}


def stack_call(limits: Sequence[StackedLimit]) -> Call[list[RateLimitResult]]:
    """Several limits decided together, as one prepared :class:`Call` of one script.

    Every limit is checked before any is written, and the hit is applied to all of them
    only if all allow it: a request refused by one limit consumes none of the others,
    and unlike a lone :func:`fixed_window` a refused hit is not counted anywhere. The
    results come back in ``limits``' order, each with its own verdict (``allowed``);
    the request is allowed when all are. The keys must share a cluster slot (the
    script is one call). Each limit is checked as its own function checks it.
    """
    kinds: list[str] = []
    keys: list[Any] = []
    args: list[Any] = []
    names: list[str] = []
    for algorithm, key, limit, period, amount in limits:
        if algorithm not in _BUILDERS:
            raise InvalidInput(f"stacked rate limit: no algorithm {algorithm!r}")
        kind, build = _BUILDERS[algorithm]
        single = build(key, limit, period, amount)  # type: ignore[arg-type]
        if kind == "f":
            period_arg, amount_arg = single.args  # window_ms, amount
        else:
            _, period_arg, amount_arg = single.args
        kinds.append(kind)
        keys.append(single.keys[0])
        names.append(text(single.keys[0]) or "")
        args += [kind, int(limit), period_arg, amount_arg]

    def interpret(reply: Sequence[Any]) -> list[RateLimitResult]:
        results = []
        for i, name in enumerate(names):
            allowed, used, reset, retry = reply[4 * i : 4 * i + 4]
            limit = int(args[4 * i + 1])
            results.append(_counted(bool(allowed), used, reset, retry, limit, name))
        return results

    return Call(STACK, keys, args, interpret)


def fixed_window(
    key: KeyLike, limit: int, window_ms: int, amount: int = 1, *, client: Any = None
) -> RateLimitResult:
    """Count ``amount`` hits in a fixed window that opens on its first hit.

    Atomic and one round trip (``INCRBY``, plus ``PEXPIRE`` on the window's first hit).
    Every hit is counted, rejected ones too, so ``count`` can pass ``limit``; a client
    that keeps hammering stays rejected until the window ends (``reset_ms``).

    Raises :class:`InvalidInput` for ``limit``/``window_ms``/``amount`` that are not
    integers >= 1 or ``amount > limit`` (nothing is sent), :class:`DataError` when the
    key holds something else, :class:`RedisUnavailable` / :class:`OutcomeUnknown` when
    the server cannot be reached or the reply was lost.
    """
    # Direct calls have no group: their hits are counted under the function's name.
    return rate_limit_hit(
        "fixed_window", run(fixed_window_call(key, limit, window_ms, amount), client)
    )


async def afixed_window(
    key: KeyLike, limit: int, window_ms: int, amount: int = 1, *, client: Any = None
) -> RateLimitResult:
    """The async twin of :func:`fixed_window`; same script, same rules."""
    return rate_limit_hit(
        "fixed_window", await arun(fixed_window_call(key, limit, window_ms, amount), client)
    )


def sliding_window(
    key: KeyLike, limit: int, window_ms: int, amount: int = 1, *, client: Any = None
) -> RateLimitResult:
    """Admit ``amount`` hits if the sliding-window estimate stays within ``limit``.

    The estimate weighs the previous fixed window by the part of it still inside the
    sliding window: ``previous * (window_ms - elapsed) / window_ms + current``. Windows
    follow the server's clock. Atomic, one round trip, one hash key (both counters live
    in it, so they are always in one cluster slot). Rejected hits are not counted.

    The estimate assumes the previous window's hits were spread evenly; each fixed
    window never admits more than ``limit``, but a burst at the end of one window can
    let a later sliding window see more (see docs/ratelimit.md).

    Raises :class:`InvalidInput` (bad arguments, ``amount > limit``, or
    ``limit * window_ms >= 2**51``), :class:`DataError` (the key holds something else),
    :class:`RedisUnavailable` / :class:`OutcomeUnknown`.
    """
    return rate_limit_hit(
        "sliding_window", run(sliding_window_call(key, limit, window_ms, amount), client)
    )


async def asliding_window(
    key: KeyLike, limit: int, window_ms: int, amount: int = 1, *, client: Any = None
) -> RateLimitResult:
    """The async twin of :func:`sliding_window`; same script, same rules."""
    return rate_limit_hit(
        "sliding_window", await arun(sliding_window_call(key, limit, window_ms, amount), client)
    )


def token_bucket(
    key: KeyLike, capacity: int, refill_rate: float, cost: int = 1, *, client: Any = None
) -> RateLimitResult:
    """Take ``cost`` tokens from a bucket of ``capacity`` refilled at ``refill_rate``/second.

    A new bucket is full. A negative ``cost`` gives tokens back (never above capacity),
    0 only looks. Refill follows the server's clock. Atomic, one round trip; a rejected
    hit takes nothing.

    Raises :class:`InvalidInput` (``capacity`` not an integer >= 1, ``refill_rate`` not
    a finite number > 0, ``cost`` not an integer or above ``capacity``),
    :class:`DataError` (the key holds something else), :class:`RedisUnavailable` /
    :class:`OutcomeUnknown`.
    """
    return rate_limit_hit(
        "token_bucket", run(token_bucket_call(key, capacity, refill_rate, cost), client)
    )


async def atoken_bucket(
    key: KeyLike, capacity: int, refill_rate: float, cost: int = 1, *, client: Any = None
) -> RateLimitResult:
    """The async twin of :func:`token_bucket`; same script, same rules."""
    return rate_limit_hit(
        "token_bucket", await arun(token_bucket_call(key, capacity, refill_rate, cost), client)
    )
