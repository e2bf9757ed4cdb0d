"""Every primitive as one uniform operation, so each fault runs against all of them.

A :class:`Primitive` knows how to run itself on a fresh key (sync and async, on a given
client or on atomicops' configured one), what a right result looks like, and how many
times it was applied, read straight from the server's data. A write applied twice shows
as 2: that is how the tests check "at most once" without trusting the client.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import redis
import redis.asyncio

import atomicops
from atomicops import CounterResult, Lock, Semaphore
from atomicops.engine import connection
from atomicops.scripts.registry import ScriptRegistry

# "A registry script": a user's script, in a registry of its own so the global one (and
# every other test's idea of what is registered) stays as it is.
user_scripts = ScriptRegistry()
BUMP = user_scripts.register(
    "faults_bump",
    "return redis.call('INCR', KEYS[1])",
    keys=["counter"],
    returns="the counter after the increment",
)


def _int(raw: redis.Redis, key: str) -> int:
    return int(raw.get(key) or 0)


def _exists(raw: redis.Redis, key: str) -> bool:
    return bool(raw.exists(key))


def _lock_held(raw: redis.Redis, key: str) -> int:
    """1 while the lock is held. (Fencing tokens follow the server clock, so the fence
    key cannot count grants; a retried grant to the same owner is one grant anyway.)"""
    return int(raw.exists(Lock(key, 30).key))


def _semaphore_holders(raw: redis.Redis, key: str) -> int:
    return int(raw.zcard(Semaphore(key, 2, 30).key))


def _halves(raw: redis.Redis, key: str) -> Any:
    """incr_float of 0.5: how many were added (an int when whole)."""
    halves = Decimal((raw.get(key) or b"0").decode()) / Decimal("0.5")
    return int(halves) if halves == halves.to_integral_value() else halves


def _exact_hits(raw: redis.Redis, key: str) -> int:
    """The hits in an exact window's log: each run is "<ms> <hits> <cum>"."""
    return sum(int(run.split()[1]) for run in raw.lrange(key, 0, -1))


def _tokens_taken(raw: redis.Redis, key: str) -> int:
    tokens = raw.hget(key, "tokens")
    return 0 if tokens is None else round(10 - float(tokens))


@dataclass(frozen=True)
class Primitive:
    name: str
    # Whether the server may refuse it for lack of memory (it grows the data). Deletes
    # and reads are let through by an OOM server.
    grows: bool
    write: bool
    run: Callable[[str, Any], Any]
    arun: Callable[[str, Any], Awaitable[Any]]
    ok: Callable[[Any], bool]
    applied: Callable[[redis.Redis, str], Any]
    setup: Callable[[redis.Redis, str], None] = lambda raw, key: None

    def __repr__(self) -> str:
        return self.name


def _set(value: Any) -> Callable[[redis.Redis, str], None]:
    return lambda raw, key: raw.set(key, value)


PRIMITIVES = [
    Primitive(
        "compare_and_set",
        grows=True,
        write=True,
        run=lambda key, c: atomicops.compare_and_set(key, None, "mine", client=c),
        arun=lambda key, c: atomicops.acompare_and_set(key, None, "mine", client=c),
        ok=lambda r: r is True,
        applied=lambda raw, key: int(raw.get(key) == b"mine"),
    ),
    Primitive(
        "compare_and_delete",
        grows=False,
        write=True,
        setup=_set("mine"),
        run=lambda key, c: atomicops.compare_and_delete(key, "mine", client=c),
        arun=lambda key, c: atomicops.acompare_and_delete(key, "mine", client=c),
        ok=lambda r: r is True,
        applied=lambda raw, key: int(not _exists(raw, key)),
    ),
    Primitive(
        "bounded_incr",
        grows=True,
        write=True,
        run=lambda key, c: atomicops.bounded_incr(key, 100, client=c),
        arun=lambda key, c: atomicops.abounded_incr(key, 100, client=c),
        ok=lambda r: r == CounterResult(1, True),
        applied=_int,
    ),
    Primitive(
        "bounded_decr",
        grows=True,
        write=True,
        run=lambda key, c: atomicops.bounded_decr(key, -100, client=c),
        arun=lambda key, c: atomicops.abounded_decr(key, -100, client=c),
        ok=lambda r: r == CounterResult(-1, True),
        applied=lambda raw, key: -_int(raw, key),
    ),
    Primitive(
        "incr",
        grows=True,
        write=True,
        run=lambda key, c: atomicops.incr(key, client=c),
        arun=lambda key, c: atomicops.aincr(key, client=c),
        ok=lambda r: r == 1,
        applied=_int,
    ),
    Primitive(
        "incr_float",
        grows=True,
        write=True,
        run=lambda key, c: atomicops.incr_float(key, Decimal("0.5"), client=c),
        arun=lambda key, c: atomicops.aincr_float(key, Decimal("0.5"), client=c),
        ok=lambda r: r == Decimal("0.5"),
        applied=lambda raw, key: _halves(raw, key),
    ),
    Primitive(
        "get_counter",
        grows=False,
        write=False,
        setup=_set(5),
        run=lambda key, c: atomicops.get_counter(key, client=c),
        arun=lambda key, c: atomicops.aget_counter(key, client=c),
        ok=lambda r: r == 5,
        applied=lambda raw, key: 0 if _int(raw, key) == 5 else "changed",
    ),
    Primitive(
        "reset_counter",
        grows=False,
        write=True,
        setup=_set(5),
        run=lambda key, c: atomicops.reset_counter(key, client=c),
        arun=lambda key, c: atomicops.areset_counter(key, client=c),
        ok=lambda r: r == 5,
        applied=lambda raw, key: int(not _exists(raw, key)),
    ),
    Primitive(
        "fixed_window",
        grows=True,
        write=True,
        run=lambda key, c: atomicops.fixed_window(key, 10, 60_000, client=c),
        arun=lambda key, c: atomicops.afixed_window(key, 10, 60_000, client=c),
        ok=lambda r: r.allowed and r.count == 1,
        applied=_int,
    ),
    Primitive(
        "sliding_window",
        grows=True,
        write=True,
        run=lambda key, c: atomicops.sliding_window(key, 10, 60_000, client=c),
        arun=lambda key, c: atomicops.asliding_window(key, 10, 60_000, client=c),
        ok=lambda r: r.allowed and r.count == 1,
        applied=lambda raw, key: int(raw.hget(key, "c") or 0),
    ),
    Primitive(
        "exact_window",
        grows=True,
        write=True,
        run=lambda key, c: atomicops.exact_window(key, 10, 60_000, client=c),
        arun=lambda key, c: atomicops.aexact_window(key, 10, 60_000, client=c),
        ok=lambda r: r.allowed and r.count == 1,
        applied=_exact_hits,
    ),
    Primitive(
        "token_bucket",
        grows=True,
        write=True,
        # 0.001 token/s: no refill to speak of while a test looks at the bucket.
        run=lambda key, c: atomicops.token_bucket(key, 10, 0.001, client=c),
        arun=lambda key, c: atomicops.atoken_bucket(key, 10, 0.001, client=c),
        ok=lambda r: r.allowed and r.remaining == 9,
        applied=_tokens_taken,
    ),
    Primitive(
        "Lock.acquire",
        grows=True,
        write=True,
        run=lambda key, c: Lock(key, 30, client=c).acquire(blocking=False),
        arun=lambda key, c: Lock(key, 30, client=c).aacquire(blocking=False),
        ok=lambda r: r is True,
        applied=_lock_held,
    ),
    Primitive(
        "Semaphore.acquire",
        grows=True,
        write=True,
        run=lambda key, c: Semaphore(key, 2, 30, client=c).acquire(blocking=False),
        arun=lambda key, c: Semaphore(key, 2, 30, client=c).aacquire(blocking=False),
        ok=lambda r: r is True,
        applied=_semaphore_holders,
    ),
    Primitive(
        "registry script",
        grows=True,
        write=True,
        run=lambda key, c: BUMP(keys=[key], client=c),
        arun=lambda key, c: BUMP.acall(keys=[key], client=c),
        ok=lambda r: r == 1,
        applied=_int,
    ),
]

BY_NAME = {p.name: p for p in PRIMITIVES}


def describe(outcome: Any) -> str:
    """An outcome (a result, or the exception raised) in a few words for a failure list."""
    if isinstance(outcome, BaseException):
        cause = outcome.__cause__
        tail = f" (from {type(cause).__name__})" if cause is not None else ""
        return f"raised {type(outcome).__name__}: {str(outcome)[:160]}{tail}"
    return f"returned {outcome!r}"


def call(primitive: Primitive, key: str, client: Any) -> Any:
    """Run the sync form; the exception raised, if any, is the outcome."""
    try:
        return primitive.run(key, client)
    except Exception as exc:
        return exc


async def acall(primitive: Primitive, key: str, client: Any) -> Any:
    """Run the async form; the exception raised, if any, is the outcome."""
    try:
        return await primitive.arun(key, client)
    except Exception as exc:
        return exc


async def run_case(primitive: Primitive, key: str, client: Any, mode: str) -> Any:
    """The outcome of the ``mode`` ("sync" or "async") form."""
    if mode == "sync":
        return call(primitive, key, client)
    return await acall(primitive, key, client)


WHO = ("atomicops", "user")  # atomicops' own client (from settings) / a user's redis-py client


class Clients:
    """The clients of one test: atomicops' own (``client=None``, built from the settings)
    and a user's redis-py clients with redis-py's default retries, sync and async."""

    def __init__(self, port: int, **options: Any) -> None:
        self.sync_user = redis.Redis(port=port, **options)
        self.async_user = redis.asyncio.Redis(port=port, **options)
        # atomicops' own clients once pinned (see :meth:`pin_own`); None: from settings.
        self.own: dict[str, Any] = {"sync": None, "async": None}

    def pick(self, who: str, mode: str) -> Any:
        if who == "atomicops":
            return self.own[mode]
        return self.sync_user if mode == "sync" else self.async_user

    def pin_own(self) -> None:
        """Hold on to the clients atomicops built from its settings, so this object keeps
        using them after :func:`atomicops.engine.connection.reset_clients` (call it in a loop)."""
        self.own = {"sync": connection.get_client(), "async": connection.get_async_client()}

    async def close(self) -> None:
        self.sync_user.close()
        await self.async_user.aclose()
