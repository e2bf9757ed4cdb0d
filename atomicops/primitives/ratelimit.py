"""Rate limits: fixed window, sliding window, exact window and token bucket, one Lua script each.

Every hit is one script call, so one round trip when the server has the script: the
read, the decision and the write happen in one atomic step, and no number of clients
can slip a hit in between. The sliding window, the exact window and the token bucket
read the time from the server (``TIME``), so clients with skewed clocks still agree.

Each function takes a key (a string used as given, or an ``(instance, name)`` pair) and
returns a :class:`RateLimitResult`; ``a``-prefixed twins do the same over
``redis.asyncio``. Arguments are checked here before anything is sent, so bad input
raises :class:`~atomicops.exceptions.InvalidInput` and changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from atomicops.engine.ops import text
from atomicops.exceptions import InvalidInput, RateLimited
from atomicops.ops.observe import rate_limit_hit
from atomicops.primitives.calls import Call, asend, resolve, send
from atomicops.primitives.keys import KeyLike
from atomicops.primitives.validate import MAX_EXACT, MAX_LEASE_MS, whole

__all__ = [
    "ExactWindow",
    "RateLimitResult",
    "StackedLimit",
    "aexact_window",
    "afixed_window",
    "asliding_window",
    "atoken_bucket",
    "exact_window",
    "fixed_window",
    "parse_drf_rate",
    "sliding_window",
    "stack_call",
    "token_bucket",
]

FIXED_WINDOW = "ratelimit_fixed_window"
SLIDING_WINDOW = "ratelimit_sliding_window"
EXACT_WINDOW = "ratelimit_exact_window"
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


class ExactWindow(NamedTuple):
    """An exact-window hit with what the log says besides the verdict (for DRF's throttles).

    ``runs`` are the newest admitted hits as ``(server ms, hits in that ms)``, newest first,
    as many runs as were asked for; ``oldest_ms`` is the oldest counted hit's ms (0 when
    none is counted), ``now_ms`` the time the script used.
    """

    result: RateLimitResult
    now_ms: int
    oldest_ms: int
    runs: list[tuple[int, int]]


def exact_log_call(
    key: KeyLike,
    limit: int,
    window_ms: int,
    amount: int,
    *,
    history: int = 0,
    clock_ms: int | None = None,
) -> Call[ExactWindow]:
    """The exact window hit as a prepared :class:`Call`, arguments checked (nothing sent).

    ``history``: how many of the newest runs of the log to return. ``clock_ms`` replaces
    the server's ``TIME`` and is for tests only (DRF's own tests drive a fake
    ``timer()``; see ``atomicops.testing``): production calls leave it ``None``.
    """
    resolved, name = resolve(key)
    limit = _whole(limit, "limit", name)
    window_ms = _whole(window_ms, "window_ms", name)
    if window_ms > MAX_LEASE_MS:
        # The script adds the window to the server clock: the sum must stay exact.
        raise InvalidInput(
            f"rate limit on key {name!r}: window_ms {window_ms} is above 2**52 "
            "(about 142,000 years)",
            key=name,
        )
    amount = _amount(amount, limit, name)
    history = _whole(history, "history", name, minimum=0)
    args: list[Any] = [limit, window_ms, amount, history]
    if clock_ms is not None:
        args.append(_whole(clock_ms, "clock_ms", name, minimum=0))

    def interpret(reply: Sequence[Any]) -> ExactWindow:
        allowed, count, reset, retry, now, oldest, n = reply[:7]
        result = _counted(bool(allowed), count, reset, retry, limit, name)
        runs = [(reply[7 + 2 * i], reply[8 + 2 * i]) for i in range(n)]
        return ExactWindow(result, now, oldest, runs)

    return Call(EXACT_WINDOW, [resolved], args, interpret)


def exact_window_call(
    key: KeyLike, limit: int, window_ms: int, amount: int
) -> Call[RateLimitResult]:
    """The exact window hit as a prepared :class:`Call`, arguments checked (nothing sent)."""
    # The same checks and arguments; only the reply is read into less.
    log = exact_log_call(key, limit, window_ms, amount)
    name, limit = text(log.keys[0]) or "", log.args[0]

    def interpret(reply: Sequence[Any]) -> RateLimitResult:
        allowed, count, reset, retry = reply[0], reply[1], reply[2], reply[3]
        return _counted(bool(allowed), count, reset, retry, limit, name)

    return Call(EXACT_WINDOW, log.keys, log.args, interpret)


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


# DRF's periods, by the first letter of the rate's period as DRF's parse_rate reads it.
_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_drf_rate(rate: Any) -> tuple[int, int]:
    """A DRF rate string (``"100/min"``) as ``(requests, seconds)``, read as DRF reads it.

    DRF's ``parse_rate`` takes ``int()`` of the part before ``/`` and the period's first
    letter (``s``, ``m``, ``h``, ``d``: ``"5/sec"``, ``"5/minute"``, ``"5/day"``). This
    accepts the same strings and also checks that the exact window can serve the rate
    (requests at most 2**53 - 1; a negative count admits nothing, as in DRF). Raises
    :class:`InvalidInput` otherwise. For ``atomicops.checks`` (which must not import DRF).
    """
    try:
        num, period = rate.split("/")
        requests = int(num)
        seconds = _PERIODS[period[0]]
    except (AttributeError, ValueError, KeyError, IndexError, TypeError):
        raise InvalidInput(
            f"throttle rate {rate!r} is not '<requests>/<period>' with a period of "
            "s, sec, m, min, h, hour, d or day"
        ) from None
    if requests > MAX_EXACT:
        raise InvalidInput(
            f"throttle rate {rate!r}: {requests} requests is beyond 2**53 - 1, the largest "
            "count a Lua number holds exactly"
        )
    return requests, seconds


class StackedLimit(NamedTuple):
    """One limit of a stack decided by :func:`stack_call`: the arguments of its function."""

    algorithm: str  # "fixed_window", "sliding_window", "exact_window" or "token_bucket"
    key: KeyLike
    limit: int  # a token bucket's capacity
    period: float  # window_ms, or a token bucket's refill_rate (tokens per second)
    amount: int = 1  # a token bucket's cost


_BUILDERS = {
    "fixed_window": ("f", fixed_window_call),
    "sliding_window": ("s", sliding_window_call),
    "exact_window": ("e", exact_window_call),
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
            _, period_arg, amount_arg = single.args[:3]
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
        "fixed_window", send(fixed_window_call(key, limit, window_ms, amount), client)
    )


async def afixed_window(
    key: KeyLike, limit: int, window_ms: int, amount: int = 1, *, client: Any = None
) -> RateLimitResult:
    """The async twin of :func:`fixed_window`; same script, same rules."""
    return rate_limit_hit(
        "fixed_window", await asend(fixed_window_call(key, limit, window_ms, amount), client)
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
        "sliding_window", send(sliding_window_call(key, limit, window_ms, amount), client)
    )


async def asliding_window(
    key: KeyLike, limit: int, window_ms: int, amount: int = 1, *, client: Any = None
) -> RateLimitResult:
    """The async twin of :func:`sliding_window`; same script, same rules."""
    return rate_limit_hit(
        "sliding_window", await asend(sliding_window_call(key, limit, window_ms, amount), client)
    )


def exact_window(
    key: KeyLike, limit: int, window_ms: int, amount: int = 1, *, client: Any = None
) -> RateLimitResult:
    """Admit ``amount`` hits if, with them, at most ``limit`` lie in the last ``window_ms``.

    Exact: the window slides with every call, and a hit is admitted if and only if fewer
    than ``limit - amount + 1`` admitted hits lie in ``(now - window_ms, now]`` (DRF's
    rule), so a client pacing itself below the rate is never refused and no window ever
    holds more than ``limit``. ``retry_after_ms`` is exact: when the oldest hit that has
    to leave the window leaves it. Rejected hits are not counted. Server time, atomic,
    one round trip, one list key holding the admitted hits still in the window,
    run-length encoded per server ms: memory grows with the distinct ms the client used
    (at most ``limit`` runs), not with ``limit`` (see docs/ratelimit.md for figures).

    Raises :class:`InvalidInput` (bad arguments, ``amount > limit``, ``window_ms`` above
    2**52), :class:`DataError` (the key holds something else), :class:`RedisUnavailable`
    / :class:`OutcomeUnknown`.
    """
    return rate_limit_hit(
        "exact_window", send(exact_window_call(key, limit, window_ms, amount), client)
    )


async def aexact_window(
    key: KeyLike, limit: int, window_ms: int, amount: int = 1, *, client: Any = None
) -> RateLimitResult:
    """The async twin of :func:`exact_window`; same script, same rules."""
    return rate_limit_hit(
        "exact_window", await asend(exact_window_call(key, limit, window_ms, amount), client)
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
        "token_bucket", send(token_bucket_call(key, capacity, refill_rate, cost), client)
    )


async def atoken_bucket(
    key: KeyLike, capacity: int, refill_rate: float, cost: int = 1, *, client: Any = None
) -> RateLimitResult:
    """The async twin of :func:`token_bucket`; same script, same rules."""
    return rate_limit_hit(
        "token_bucket", await asend(token_bucket_call(key, capacity, refill_rate, cost), client)
    )
