"""Property-based fuzzing of every public function's arguments (Hypothesis).

The property: every input either succeeds, when it is within the documented domain, or
raises :class:`InvalidInput` with the keyspace unchanged (a SCAN + DUMP snapshot before
and after); no other exception escapes. Each family below draws its arguments from a mix
of in-domain values, edge values (2**53, 1e308, NaN, -0.0, huge Decimals...) and junk
(None, bools, bytes, containers), and a predicate written from the docstrings says
whether the input is in the domain: True (must succeed), False (must raise
InvalidInput) or None (where the docs leave it open: either is fine).

The fuzz runs on fakeredis (most examples) and briefly on a real server. It is
derandomized so CI is repeatable; ``ATOMICOPS_FUZZ_EXAMPLES=2000
ATOMICOPS_FUZZ_RANDOM=1`` explores further. Known offenders are pinned by name in
:func:`test_known_offender`.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from fractions import Fraction
from functools import partial
from typing import Any

import pytest
import redis
import redis.asyncio
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import atomicops
from atomicops import DataError, InvalidInput, Lock, LockError, LockNotOwned, Semaphore
from atomicops.scripts.registry import ScriptRegistry
from tests.conftest import REAL_KINDS
from tests.faults.conftest import binary_for
from tests.faults.servers import OwnServer, diff, snapshot
from tests.servers import available_binaries

pytestmark = [pytest.mark.faults]

MAX = 2**53 - 1  # the largest integer a Lua number holds exactly
MAX_LEASE_MS = 2**52  # locks and semaphores: lease ends stay exact (lock_acquire.lua)
EXAMPLES = int(os.environ.get("ATOMICOPS_FUZZ_EXAMPLES", "120"))
REAL_EXAMPLES = max(10, EXAMPLES // 6)
RANDOM = os.environ.get("ATOMICOPS_FUZZ_RANDOM") == "1"

FUZZ = settings(
    deadline=None,
    derandomize=not RANDOM,
    database=None,
    print_blob=True,
    # No shrinking: the draws are small already, and a failing CI run stays short.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    report_multiple_bugs=False,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)

# -- values -------------------------------------------------------------------------

EDGE_INTS = [0, 1, -1, 2, 7, 1000, MAX - 1, MAX, MAX + 1, -MAX, -MAX - 1, 2**52, 2**52 + 1]
EDGE_INTS += [2**63 - 1, 2**63, 2**64, -(2**64), 10**30, 10**400]
EDGE_FLOATS = [0.0, -0.0, 1e-9, 5e-324, 0.001, 0.5, 1.0, 1.5, 30.0, 1e14, 1e15, 2.0**53]
EDGE_FLOATS += [1e16, 1e308, 1.7976931348623157e308, math.inf, -math.inf, math.nan, -1.5]
EDGE_DECIMALS = [Decimal("0.5"), Decimal("-0"), Decimal("1E+2"), Decimal("7"), Decimal("-2.5")]
EDGE_DECIMALS += [Decimal("NaN"), Decimal("sNaN"), Decimal("Infinity"), Decimal("-Infinity")]
EDGE_DECIMALS += [Decimal("1E+400"), Decimal("1E-400"), Decimal("123456789.123456789123456789")]
JUNK = [None, True, False, "", "1", "x", b"", b"1", [], {}, (), object(), timedelta(seconds=1)]


def anything() -> st.SearchStrategy:
    return st.one_of(
        st.sampled_from(EDGE_INTS + EDGE_FLOATS + EDGE_DECIMALS + JUNK),
        st.integers(),
        st.floats(),
        st.decimals(),
        st.text(max_size=6),
        st.binary(max_size=6),
    )


NUM_EDGES = st.sampled_from(EDGE_INTS + EDGE_FLOATS + EDGE_DECIMALS)
WILD = st.one_of(NUM_EDGES, NUM_EDGES, st.sampled_from(JUNK), anything())


@dataclass
class Arg:
    """One argument: in-domain values to draw, and its edges (tried one by one, and drawn
    with anything else as the wild values)."""

    valid: st.SearchStrategy
    edges: tuple = ()
    only: bool = False  # the edges are all the wild values (a test's own plumbing)

    @property
    def wild(self) -> st.SearchStrategy:
        if self.only:
            return st.sampled_from(self.edges)
        if not self.edges:
            return WILD
        return st.one_of(st.sampled_from(self.edges), st.sampled_from(self.edges), WILD)


def arg(valid: st.SearchStrategy, *edges: Any, only: bool = False) -> Arg:
    return Arg(valid, edges, only)


@st.composite
def drawn(draw, specs: dict[str, Arg]) -> dict:
    """Arguments in the domain but for none, one or two drawn wild: an out-of-domain
    value then meets otherwise good arguments, so it reaches the code that must refuse it."""
    names = draw(st.permutations(list(specs)))
    wild = set(names[: draw(st.sampled_from([0, 1, 1, 1, 2]))])
    return {n: draw(specs[n].wild if n in wild else specs[n].valid) for n in specs}


def small(lo: int, hi: int) -> st.SearchStrategy:
    return st.integers(lo, hi)


INT_EDGES = (0, -1, 1, MAX, MAX + 1, -MAX, -MAX - 1, 2**63, 2**64, 10**400, 1.0, 2.5, True)
INT_EDGES += (None, "1", Decimal("1"))
TTL = arg(
    st.one_of(
        st.none(), st.floats(0.001, 1e6), st.integers(1, 10**6), st.just(timedelta(seconds=5))
    ),
    *(0, -1, 0.0, -0.0, 5e-324, 1e-9, 1e12, 9007199254740.99, 9007199254741.0, 1e14, 1e15),
    *(2**53, 1e308, math.inf, -math.inf, math.nan, True, "5", Decimal("5")),
    *(timedelta(0), timedelta(days=-1), timedelta.max, timedelta(microseconds=1)),
)
LEASE = arg(
    st.one_of(st.floats(0.01, 1000), st.integers(1, 10**6)),
    *(0, -1, 0.0, 5e-324, 1e-9, 4503599627370.0, 4503599627371, 1e13, 1e14, 2**52, 2**53),
    *(2**60, 1e308, math.inf, math.nan, True, None, Decimal("5"), timedelta(seconds=5)),
)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)  # (math.isnan(10**400) overflows)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def all_valid(*verdicts: bool | None) -> bool | None:
    """Invalid if any part is; open if any part is open; else valid."""
    if any(v is False for v in verdicts):
        return False
    if any(v is None for v in verdicts):
        return None
    return True


def within(ms: int, bound: int) -> bool | None:
    """``ms <= bound``, left open within 2 ms of it (the library rounds in doubles)."""
    if ms <= bound - 2:
        return True
    if ms > bound + 2:
        return False
    return None


# -- the domain, from the docstrings ----------------------------------------------


def key_ok(key: Any) -> bool:
    if isinstance(key, (str, bytes)):
        return bool(key)
    if isinstance(key, tuple) and len(key) == 2:
        return pair_ok(*key)
    return False


def pair_ok(instance: Any, name: Any) -> bool:
    saved = (
        hasattr(instance, "_meta") and not isinstance(instance, type) and instance.pk is not None
    )
    return saved and isinstance(name, str) and bool(name)


def lock_name_ok(name: Any) -> bool:
    if isinstance(name, str):
        return bool(name)
    return isinstance(name, tuple) and len(name) == 2 and pair_ok(*name)


def ttl_ok(ttl: Any) -> bool | None:
    """Counters, compare-and-set: None, or seconds / a timedelta > 0, at most 2**53 - 1 ms."""
    if ttl is None:
        return True
    if isinstance(ttl, timedelta):
        exact = Fraction(ttl.days * 86400 + ttl.seconds) + Fraction(ttl.microseconds, 10**6)
    elif is_int(ttl) or (isinstance(ttl, float) and math.isfinite(ttl)):
        exact = Fraction(ttl)
    elif isinstance(ttl, Decimal):
        return None  # "seconds": the docs do not say whether a Decimal counts
    else:
        return False
    if exact <= 0:
        return False
    return within(math.ceil(exact * 1000), MAX)


def lease_ok(ttl: Any) -> bool | None:
    """Locks, semaphores: seconds (float allowed) > 0, at most 2**52 ms."""
    if isinstance(ttl, Decimal):
        return None
    if not is_number(ttl) or (isinstance(ttl, float) and not math.isfinite(ttl)) or ttl <= 0:
        return False
    return within(math.ceil(Fraction(ttl) * 1000), MAX_LEASE_MS)


def timeout_ok(timeout: Any) -> bool | None:
    if timeout is None:
        return True
    if isinstance(timeout, Decimal):
        return None
    if not is_number(timeout) or is_nan(timeout):
        return False
    return timeout >= 0


def value_ok(value: Any) -> bool:
    """A compare-and-set value: str, bytes, int, or a finite float or Decimal."""
    if isinstance(value, (str, bytes)) or is_int(value):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, Decimal):
        return value.is_finite()
    return False


def float_amount_ok(value: Any) -> bool:
    """incr_float: an int, float or Decimal, finite, and finite as a double too."""
    if is_int(value):
        try:
            return math.isfinite(float(value))
        except OverflowError:
            return False
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, Decimal):
        return value.is_finite() and math.isfinite(float(value))
    return False


def in_range(value: Any, lo: int, hi: int) -> bool:
    return is_int(value) and lo <= value <= hi


# -- running one example -------------------------------------------------------------


@dataclass
class Step:
    label: str
    run: Callable[[], Any]  # returns a value, or a coroutine for async twins
    valid: bool | None
    check: Callable[[Any], bool] = lambda result: True
    # Documented outcomes that depend on timing, not on the input (a lease of a few ms
    # may run out between acquire and release: LockNotOwned).
    allowed: tuple[type[Exception], ...] = ()


class Harness:
    """One backend: a sync client, an async one on a private loop, and snapshots."""

    def __init__(self, sync: redis.Redis, make_async: Callable[[], Any]) -> None:
        self.sync = sync
        self.loop = asyncio.new_event_loop()
        self.aclient = self.loop.run_until_complete(self._make(make_async))

    @staticmethod
    async def _make(make_async: Callable[[], Any]) -> Any:
        return make_async()

    def reset(self, **seed: Any) -> None:
        """An empty keyspace but for a few bystander keys, and ``seed``."""
        self.sync.flushall()
        self.sync.set("fz:bystander", "untouched")
        self.sync.hset("fz:bystander:hash", "field", "1")
        for key, value in seed.items():
            self.sync.set(key, value)

    def steps(self, *steps: Step) -> None:
        for step in steps:
            before = snapshot(self.sync)
            try:
                result = step.run()
                if asyncio.iscoroutine(result):
                    result = self.loop.run_until_complete(result)
            except step.allowed:
                return
            except InvalidInput as exc:
                assert step.valid is not True, (
                    f"{step.label}: documented input refused with InvalidInput: {exc}"
                )
                changes = diff(before, snapshot(self.sync))
                assert not changes, (
                    f"{step.label}: InvalidInput, yet the keyspace changed: {changes}"
                )
                return  # the steps after it depend on it
            except Exception as exc:
                raise AssertionError(
                    f"{step.label}: {type(exc).__name__} escaped (only InvalidInput may): {exc}"
                ) from exc
            assert step.valid is not False, (
                f"{step.label}: out-of-domain input accepted, returned {result!r}"
            )
            assert step.check(result), f"{step.label}: wrong result {result!r}"

    def close(self) -> None:
        self.loop.run_until_complete(self.aclient.aclose())
        self.loop.close()
        self.sync.close()


@pytest.fixture(scope="module")
def real_fuzz_server():
    kind = next((k for k in REAL_KINDS if k in available_binaries()), REAL_KINDS[0])
    server = OwnServer(kind, binary_for(kind)).start()
    yield server
    server.remove()


@pytest.fixture(params=["fakeredis", "real"])
def harness(request):
    if request.param == "fakeredis":
        import fakeredis

        fake = fakeredis.FakeServer()
        made = Harness(
            fakeredis.FakeRedis(server=fake), lambda: fakeredis.FakeAsyncRedis(server=fake)
        )
        made.examples = EXAMPLES
        made.kind = "fakeredis"
    else:
        server = request.getfixturevalue("real_fuzz_server")
        made = Harness(redis.Redis(port=server.port), lambda: redis.asyncio.Redis(port=server.port))
        made.examples = REAL_EXAMPLES
        made.kind = "real"
    yield made
    made.close()


def users():
    from django.contrib.auth.models import User

    return User


def key_arg() -> Arg:
    User = users()
    return arg(
        st.sampled_from(["fz:k", "fz:k", b"fz:k", "fz:{k}", "fz:\x00%", (User(pk=1), "k")]),
        *("", b"", None, 5, ("fz", "k"), ["fz:k"], (User(pk=None), "k"), (User, "k")),
        *((User(pk=1), ""), (User(pk=1), 5), (User(pk=1), "k", "x"), (User(pk="1:a"), "b")),
    )


def twin(name: str, use_async: bool) -> Callable[..., Any]:
    return getattr(atomicops, f"a{name}" if use_async else name)


def shown(name: str, use_async: bool, args: dict) -> str:
    listed = ", ".join(f"{k}={v!r}" for k, v in args.items())
    return f"{'a' if use_async else ''}{name}({listed})"


@dataclass
class Family:
    """A public function (or a class and its methods): its arguments, a baseline of
    good ones, and how to run one example of them (sync or async) on a harness."""

    specs: Callable[[], dict[str, Arg]]
    baseline: Callable[[], dict]
    run: Callable[[Harness, dict, bool], None]


def op(
    name: str,
    specs: Callable[[], dict[str, Arg]],
    baseline: Callable[[], dict],
    call: Callable[[Callable[..., Any], dict, Any], Any],
    domain: Callable[[dict], bool | None],
    check: Callable[[Any], bool],
    seed: dict | None = None,
    quirks: Callable[[Harness, dict], tuple[type[Exception], ...]] = lambda h, a: (),
) -> Family:
    """A one-call family: ``call(function, args, client)`` is the sync or async twin.
    ``quirks`` names errors a backend may answer for some arguments (fakeredis' own)."""

    def run(harness: Harness, args: dict, use_async: bool) -> None:
        harness.reset(**(seed or {}))
        client = harness.aclient if use_async else harness.sync
        function = twin(name, use_async)
        harness.steps(
            Step(
                shown(name, use_async, args),
                lambda: call(function, args, client),
                domain(args),
                check,
                allowed=quirks(harness, args),
            )
        )

    return Family(specs, baseline, run)


def _fakeredis_underflow(harness: Harness, args: dict) -> tuple[type[Exception], ...]:
    """fakeredis parses INCRBYFLOAT's argument as a double: a finite Decimal like 1E-400,
    whose double is 0, is "not a number" there (Redis and Valkey read it as a long double)."""
    amount = args.get("amount")
    if harness.kind == "fakeredis" and isinstance(amount, Decimal) and amount.is_finite():
        if amount != 0 and float(amount) == 0:
            return (DataError,)
    return ()


def _counter_result(result: Any) -> bool:
    return isinstance(result, atomicops.CounterResult)


def _rate_result(result: Any) -> bool:
    return isinstance(result, atomicops.RateLimitResult)


FLOAT_AMOUNT = arg(
    st.one_of(
        st.floats(-1e6, 1e6),
        st.integers(-1000, 1000),
        st.decimals(-(10**6), 10**6, allow_nan=False, allow_infinity=False, places=6),
    ),
    *(math.nan, math.inf, -math.inf, 1e308, 1.7976931348623157e308, -0.0, 5e-324, 2**1024),
    *(Decimal("NaN"), Decimal("sNaN"), Decimal("Infinity"), Decimal("1E+400"), 10**400),
    *(Decimal("1E-400"), Decimal("1E+308"), Decimal("-0"), True, "1.5"),
)
VALUE_EDGES = (math.nan, math.inf, Decimal("NaN"), Decimal("sNaN"), Decimal("-Infinity"), True)
VALUE_EDGES += (None, object(), [], 10**400, -0.0, Decimal("-0"), "", b"")
VALUES = st.one_of(
    st.sampled_from(["old", b"old", "new", 7, 7.5, Decimal("7"), Decimal("8.25")]),
    st.text(max_size=4),
    st.binary(max_size=4),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
)
COUNT = {"key": "fz:k", "ttl": None}


def _window_domain(a: dict, sliding: bool, exact: bool = False) -> bool | None:
    limit_ok = in_range(a["limit"], 1, MAX)
    valid = all_valid(
        key_ok(a["key"]),
        limit_ok,
        in_range(a["window_ms"], 1, MAX),
        in_range(a["amount"], 1, a["limit"] if limit_ok else MAX),
    )
    if valid and sliding and 4 * a["limit"] * a["window_ms"] >= 2**53:
        return False  # documented: limit * window_ms must stay below 2**51
    if valid and exact and a["window_ms"] > 2**52:
        return False  # documented: the exact window adds window_ms to the server clock
    return valid


def _bucket_domain(a: dict) -> bool | None:
    capacity, rate, cost = a["capacity"], a["refill_rate"], a["cost"]
    capacity_ok = in_range(capacity, 1, MAX)
    rate_ok = is_number(rate) and not is_nan(rate) and 0 < rate <= MAX
    fills: bool | None = True
    if capacity_ok and rate_ok:  # the bucket's expiry is its time to fill up, in ms
        ratio = Fraction(capacity * 1000) / Fraction(rate)
        fills = True if ratio <= MAX * (1 - 1e-9) else (False if ratio > MAX else None)
    return all_valid(
        key_ok(a["key"]),
        capacity_ok,
        rate_ok,
        fills,
        is_int(cost) and abs(cost) <= MAX and (not capacity_ok or cost <= capacity),
    )


def _window_specs(sliding: bool, exact: bool = False) -> dict[str, Arg]:
    extra = (2**50, 2**51, 6e4, "60000") if sliding else (6e4, "60000")
    if exact:
        extra = (2**52, 2**52 + 1, *extra)
    return {
        "key": key_arg(),
        "limit": arg(small(1, 100), *INT_EDGES),
        "window_ms": arg(small(1, 10**7), *INT_EDGES, *extra),
        "amount": arg(small(1, 5), *INT_EDGES),
    }


def _window(f: Callable[..., Any], a: dict, c: Any) -> Any:
    return f(a["key"], a["limit"], a["window_ms"], a["amount"], client=c)


# -- locks and semaphores: construct, acquire, extend, release ---------------------------


def _lease_specs(kind: str) -> dict[str, Arg]:
    User = users()
    specs = {
        "name": arg(
            st.sampled_from(["fz-lock", "fz:{lock}", "fz%lock", "auth.user:1:a:b", (User(pk=1), "a:b")]),
            *("", b"fz", None, 5, (User(pk=None), "x"), (User, "x"), (User(pk=1), "")),
        ),
        "ttl": LEASE,
        "timeout": arg(
            st.one_of(st.none(), st.floats(0, 10)),
            *(-1, math.nan, math.inf, 10**400, Decimal("1"), True),
        ),
        "auto_renew": arg(st.just(False), True, None, 1, "yes"),
        "renew_fraction": arg(
            st.one_of(st.just(1 / 3), st.floats(0.01, 0.99)), 0, 1, 1.5, math.nan, True, None
        ),
        "max_renewals": arg(st.one_of(st.none(), small(0, 5)), -1, True, 2.5, "3"),
        "on_lost": arg(st.none(), print, 5, "x"),
        "acquire": arg(
            st.sampled_from([(False, None), (True, 0), (True, 0.01)]),
            ("yes", None), (False, 1), (True, -1), (True, math.nan),
            only=True,
        ),
        "extend": arg(
            st.one_of(st.none(), st.floats(0.01, 100)), *LEASE.edges
        ),
    }  # fmt: skip
    if kind == "Semaphore":
        specs["limit"] = arg(small(1, 10), *INT_EDGES, 2**53)
    return specs


def _lease_baseline(kind: str) -> dict:
    base = {
        "name": "fz-lock",
        "ttl": 10,
        "timeout": None,
        "auto_renew": False,
        "renew_fraction": 1 / 3,
        "max_renewals": None,
        "on_lost": None,
        "acquire": (False, None),
        "extend": None,
    }
    if kind == "Semaphore":
        base["limit"] = 2
    return base


def _lease_run(kind: str) -> Callable[[Harness, dict, bool], None]:
    def run(harness: Harness, a: dict, use_async: bool) -> None:
        harness.reset()
        client = harness.aclient if use_async else harness.sync
        prefix = "a" if use_async else ""
        options = {
            k: a[k] for k in ("timeout", "auto_renew", "renew_fraction", "max_renewals", "on_lost")
        }
        made: list[Any] = []

        def build() -> Any:
            if kind == "Lock":
                lease = Lock(a["name"], a["ttl"], client=client, **options)
            else:
                lease = Semaphore(a["name"], a["limit"], a["ttl"], client=client, **options)
            made.append(lease)
            return lease

        valid = all_valid(
            lock_name_ok(a["name"]),
            lease_ok(a["ttl"]),
            timeout_ok(a["timeout"]),
            isinstance(a["auto_renew"], bool),
            is_number(a["renew_fraction"]) and 0 < a["renew_fraction"] < 1,
            a["max_renewals"] is None or (is_int(a["max_renewals"]) and a["max_renewals"] >= 0),
            a["on_lost"] is None or callable(a["on_lost"]),
            kind == "Lock" or in_range(a["limit"], 1, MAX),
        )
        blocking, acquire_timeout = a["acquire"]
        acquire_valid = all_valid(
            isinstance(blocking, bool),
            acquire_timeout is None or (blocking is True and timeout_ok(acquire_timeout)),
        )
        extend_valid = True if a["extend"] is None else lease_ok(a["extend"])
        # A lease of a few seconds may run out before the next step: LockNotOwned is then
        # the documented answer of extend() and release().
        short = [t for t in (a["ttl"], a["extend"]) if is_number(t) and 0 < t < 5]
        may_lose = (LockNotOwned,) if short else ()
        title = f"{kind}({', '.join(f'{k}={v!r}' for k, v in a.items())})"

        def method(name: str) -> Callable[..., Any]:
            return getattr(made[0], prefix + name)

        try:
            harness.steps(
                Step(title, build, valid),
                Step(
                    f"{title}.{prefix}acquire{a['acquire']!r}",
                    lambda: method("acquire")(blocking, acquire_timeout),
                    acquire_valid,
                    lambda granted: granted is True,
                ),
                Step(
                    f"{title}.{prefix}extend({a['extend']!r})",
                    lambda: method("extend")(a["extend"]),
                    extend_valid,
                    allowed=may_lose,
                ),
                Step(
                    f"{title}.{prefix}release()",
                    lambda: method("release")(),
                    True,
                    allowed=may_lose,
                ),
            )
        finally:
            if made and made[0].held:  # a refused extend leaves it held: give it back
                try:
                    done = method("release")()
                    if asyncio.iscoroutine(done):
                        harness.loop.run_until_complete(done)
                except LockError:
                    pass

    return run


# -- a registry script ------------------------------------------------------------------

user_scripts = ScriptRegistry()
ECHO = user_scripts.register(
    "fuzz_echo", "return #ARGV", keys=["k"], args=["a", "b"], returns="how many args came"
)


def _script_arg_ok(value: Any) -> bool | None:
    if isinstance(value, (str, bytes)) or is_int(value):
        return True
    if isinstance(value, (float, Decimal)):
        finite = math.isfinite(value) if isinstance(value, float) else value.is_finite()
        return True if finite else None  # sent as text; the docs do not say
    return False


def _script_run(harness: Harness, a: dict, use_async: bool) -> None:
    harness.reset()
    client = harness.aclient if use_async else harness.sync
    script_keys, args = a["keys"], a["args"]
    if isinstance(script_keys, (str, bytes)) or isinstance(args, (str, bytes)):
        valid = None  # a string is a Sequence too: the docs do not say
    elif isinstance(script_keys, (list, tuple)) and isinstance(args, (list, tuple)):
        valid = all_valid(
            len(script_keys) == 1 and all(isinstance(k, (str, bytes)) and k for k in script_keys),
            len(args) <= 2,
            *[_script_arg_ok(value) for value in args],
        )
    else:
        valid = False  # keys and args are sequences
    run = ECHO.acall if use_async else ECHO
    harness.steps(
        Step(
            f"fuzz_echo{'.acall' if use_async else ''}(keys={script_keys!r}, args={args!r})",
            lambda: run(keys=script_keys, args=args, client=client),
            valid,
            lambda r: r == len(args),
        )
    )


def _key_for_run(harness: Harness, a: dict, use_async: bool) -> None:
    harness.reset()
    harness.steps(
        Step(
            f"key_for({a['instance']!r}, {a['name']!r})",
            lambda: atomicops.key_for(a["instance"], a["name"]),
            pair_ok(a["instance"], a["name"]),
            lambda r: isinstance(r, str),
        )
    )


def _list_locks_run(harness: Harness, a: dict, use_async: bool) -> None:
    harness.reset()
    harness.steps(
        Step(
            f"list_locks(limit={a['limit']!r})",
            lambda: atomicops.list_locks(limit=a["limit"], client=harness.sync),
            is_int(a["limit"]) and a["limit"] >= 1,
            lambda r: r == [],
        )
    )


def families() -> dict[str, Family]:
    User = users()
    return {
        "bounded_incr": op(
            "bounded_incr",
            lambda: {
                "key": key_arg(),
                "limit": arg(small(0, 1000), *INT_EDGES),
                "amount": arg(small(1, 100), *INT_EDGES),
                "ttl": TTL,
            },
            lambda: {**COUNT, "limit": 10, "amount": 1},
            lambda f, a, c: f(a["key"], a["limit"], a["amount"], ttl=a["ttl"], client=c),
            lambda a: all_valid(
                key_ok(a["key"]),
                in_range(a["limit"], 0, MAX),
                in_range(a["amount"], 1, MAX),
                ttl_ok(a["ttl"]),
            ),
            _counter_result,
            {"fz:k": "7"},
        ),
        "bounded_decr": op(
            "bounded_decr",
            lambda: {
                "key": key_arg(),
                "floor": arg(small(-1000, 1000), *INT_EDGES),
                "amount": arg(small(1, 100), *INT_EDGES),
                "ttl": TTL,
            },
            lambda: {**COUNT, "floor": 0, "amount": 1},
            lambda f, a, c: f(a["key"], a["floor"], a["amount"], ttl=a["ttl"], client=c),
            lambda a: all_valid(
                key_ok(a["key"]),
                in_range(a["floor"], -MAX, MAX),
                in_range(a["amount"], 1, MAX),
                ttl_ok(a["ttl"]),
            ),
            _counter_result,
            {"fz:k": "7"},
        ),
        "incr": op(
            "incr",
            lambda: {"key": key_arg(), "amount": arg(small(-1000, 1000), *INT_EDGES), "ttl": TTL},
            lambda: {**COUNT, "amount": 1},
            lambda f, a, c: f(a["key"], a["amount"], ttl=a["ttl"], client=c),
            lambda a: all_valid(
                key_ok(a["key"]), in_range(a["amount"], -MAX, MAX), ttl_ok(a["ttl"])
            ),
            is_int,
            {"fz:k": "7"},
        ),
        "incr_float": op(
            "incr_float",
            lambda: {"key": key_arg(), "amount": FLOAT_AMOUNT, "ttl": TTL},
            lambda: {**COUNT, "amount": 0.5},
            lambda f, a, c: f(a["key"], a["amount"], ttl=a["ttl"], client=c),
            lambda a: all_valid(
                key_ok(a["key"]), float_amount_ok(a["amount"]), ttl_ok(a["ttl"])
            ),
            lambda r: isinstance(r, Decimal) and r.is_finite(),
            {"fz:k": "7"},
            quirks=_fakeredis_underflow,
        ),
        "get_counter": op(
            "get_counter",
            lambda: {"key": key_arg()},
            lambda: {"key": "fz:k"},
            lambda f, a, c: f(a["key"], client=c),
            lambda a: key_ok(a["key"]),
            is_int,
            {"fz:k": "7"},
        ),
        "reset_counter": op(
            "reset_counter",
            lambda: {"key": key_arg()},
            lambda: {"key": "fz:k"},
            lambda f, a, c: f(a["key"], client=c),
            lambda a: key_ok(a["key"]),
            is_int,
            {"fz:k": "7"},
        ),
        "compare_and_set": op(
            "compare_and_set",
            lambda: {
                "key": key_arg(),
                "expected": arg(st.one_of(st.none(), VALUES), *VALUE_EDGES),
                "new": arg(VALUES, *VALUE_EDGES),
                "ttl": TTL,
            },
            lambda: {**COUNT, "expected": "old", "new": "new"},
            lambda f, a, c: f(a["key"], a["expected"], a["new"], ttl=a["ttl"], client=c),
            lambda a: all_valid(
                key_ok(a["key"]),
                a["expected"] is None or value_ok(a["expected"]),
                value_ok(a["new"]),
                ttl_ok(a["ttl"]),
            ),
            lambda r: isinstance(r, bool),
            {"fz:k": "old"},
        ),
        "compare_and_delete": op(
            "compare_and_delete",
            lambda: {"key": key_arg(), "expected": arg(VALUES, *VALUE_EDGES)},
            lambda: {"key": "fz:k", "expected": "old"},
            lambda f, a, c: f(a["key"], a["expected"], client=c),
            lambda a: all_valid(key_ok(a["key"]), value_ok(a["expected"])),
            lambda r: isinstance(r, bool),
            {"fz:k": "old"},
        ),
        "fixed_window": op(
            "fixed_window",
            lambda: _window_specs(False),
            lambda: {"key": "fz:k", "limit": 10, "window_ms": 60_000, "amount": 1},
            _window,
            lambda a: _window_domain(a, sliding=False),
            _rate_result,
        ),
        "sliding_window": op(
            "sliding_window",
            lambda: _window_specs(True),
            lambda: {"key": "fz:k", "limit": 10, "window_ms": 60_000, "amount": 1},
            _window,
            lambda a: _window_domain(a, sliding=True),
            _rate_result,
        ),
        "exact_window": op(
            "exact_window",
            lambda: _window_specs(False, exact=True),
            lambda: {"key": "fz:k", "limit": 10, "window_ms": 60_000, "amount": 1},
            _window,
            lambda a: _window_domain(a, sliding=False, exact=True),
            _rate_result,
        ),
        "token_bucket": op(
            "token_bucket",
            lambda: {
                "key": key_arg(),
                "capacity": arg(small(1, 100), *INT_EDGES),
                "refill_rate": arg(
                    st.one_of(st.floats(0.001, 1000), st.integers(1, 1000)),
                    *(0, -1, 0.0, 5e-324, 1e-12, MAX, MAX + 1, 2.0**53, math.inf, math.nan),
                    *(Decimal("1"), True, "1", None),
                ),
                "cost": arg(small(-5, 5), *INT_EDGES),
            },
            lambda: {"key": "fz:k", "capacity": 10, "refill_rate": 1.0, "cost": 1},
            lambda f, a, c: f(a["key"], a["capacity"], a["refill_rate"], a["cost"], client=c),
            _bucket_domain,
            _rate_result,
        ),
        "Lock": Family(lambda: _lease_specs("Lock"), lambda: _lease_baseline("Lock"), _lease_run("Lock")),
        "Semaphore": Family(
            lambda: _lease_specs("Semaphore"),
            lambda: _lease_baseline("Semaphore"),
            _lease_run("Semaphore"),
        ),
        "registry script": Family(
            lambda: {
                "keys": arg(
                    st.just(["fz:k"]), [], ["fz:k", "fz:j"], [""], [None], [5], [b""], "fz:k", None, 0
                ),
                "args": arg(
                    st.lists(st.one_of(st.text(max_size=3), st.integers(), st.binary(max_size=3)), max_size=2),
                    [1, 2, 3], [None], [True], [[]], [math.nan], [Decimal("NaN")], [object()], 0, None, "ab",
                ),
            },
            lambda: {"keys": ["fz:k"], "args": ["a"]},
            _script_run,
        ),
        "key_for": Family(
            lambda: {
                "instance": arg(
                    st.sampled_from([User(pk=1), User(pk="1:a")]), User(pk=None), User, None, "x"
                ),
                "name": arg(st.text(min_size=1, max_size=5), "", None, 5, b"x"),
            },
            lambda: {"instance": User(pk=1), "name": "views"},
            _key_for_run,
        ),
        "list_locks": Family(
            lambda: {"limit": arg(small(1, 1000), *INT_EDGES)},
            lambda: {"limit": 10},
            _list_locks_run,
        ),
    }  # fmt: skip


FAMILY_NAMES = [
    *("bounded_incr", "bounded_decr", "incr", "incr_float", "get_counter", "reset_counter"),
    *("compare_and_set", "compare_and_delete", "fixed_window", "sliding_window"),
    *("exact_window", "token_bucket"),
    *("Lock", "Semaphore", "registry script", "key_for", "list_locks"),
]


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_fuzz(name, harness, figures):
    """Random arguments, at most two of them out of the domain at a time."""
    family = families()[name]
    specs = family.specs()
    figures("e. fuzz: random arguments (Hypothesis)", harness.kind, examples=harness.examples)

    @settings(FUZZ, max_examples=harness.examples)
    @given(drawn(specs), st.booleans())
    def run(args: dict, use_async: bool) -> None:
        family.run(harness, args, use_async)

    run()


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_edges(name, harness, figures):
    """Every edge of every argument, with all the other arguments good: sync and async."""
    family = families()[name]
    baseline = family.baseline()
    cases = [(None, None)] + [
        (arg_name, edge) for arg_name, spec in family.specs().items() for edge in spec.edges
    ]
    figures("e. fuzz: every edge value of every argument", harness.kind, calls=2 * len(cases))
    failures = []
    for arg_name, edge in cases:
        args = dict(baseline) if arg_name is None else {**baseline, arg_name: edge}
        for use_async in (False, True):
            try:
                family.run(harness, args, use_async)
            except AssertionError as exc:
                failures.append(str(exc).splitlines()[0])
    assert not failures, f"{len(failures)} of {2 * len(cases)} edge cases failed:\n" + "\n".join(
        failures
    )


# -- known offenders, by name ------------------------------------------------------------


def offenders():
    """name -> setup(client) returning the call that must raise InvalidInput, changing nothing."""
    return {
        "bounded_incr ttl=1e308": lambda c: lambda: atomicops.bounded_incr("fz:k", 10, ttl=1e308, client=c),
        "incr ttl=1e308": lambda c: lambda: atomicops.incr("fz:k", ttl=1e308, client=c),
        "compare_and_set ttl=1e308": lambda c: lambda: atomicops.compare_and_set("fz:k", None, "v", ttl=1e308, client=c),
        "incr_float ttl=1e308": lambda c: lambda: atomicops.incr_float("fz:k", 1.5, ttl=1e308, client=c),
        "Lock ttl=2**53": lambda c: lambda: Lock("fz", 2**53, client=c).acquire(blocking=False),
        "Lock ttl=2**60": lambda c: lambda: Lock("fz", 2**60, client=c).acquire(blocking=False),
        "Lock ttl=1e14 (float)": lambda c: lambda: Lock("fz", 1e14, client=c).acquire(blocking=False),
        "Semaphore ttl=2**53": lambda c: lambda: Semaphore("fz", 2, 2**53, client=c).acquire(blocking=False),
        "Semaphore ttl=1e14 (float)": lambda c: lambda: Semaphore("fz", 2, 1e14, client=c).acquire(blocking=False),
        "Lock.extend(2**53)": lambda c: partial(_held(Lock("fz", 10, client=c)).extend, 2**53),
        "Lock.extend(1e14)": lambda c: partial(_held(Lock("fz", 10, client=c)).extend, 1e14),
        "Semaphore.extend(2**53)": lambda c: partial(_held(Semaphore("fz", 2, 10, client=c)).extend, 2**53),
        "Semaphore(limit=2**64)": lambda c: lambda: Semaphore("fz", 2**64, 10, client=c).acquire(blocking=False),
        "Semaphore(limit=2**53)": lambda c: lambda: Semaphore("fz", 2**53, 10, client=c).acquire(blocking=False),
        "compare_and_set new=Decimal('NaN')": lambda c: lambda: atomicops.compare_and_set("fz:k", None, Decimal("NaN"), client=c),
        "compare_and_set expected=Decimal('NaN')": lambda c: lambda: atomicops.compare_and_set("fz:k", Decimal("NaN"), "v", client=c),
        "compare_and_set new=Decimal('sNaN')": lambda c: lambda: atomicops.compare_and_set("fz:k", None, Decimal("sNaN"), client=c),
        "compare_and_set new=Decimal('Infinity')": lambda c: lambda: atomicops.compare_and_set("fz:k", None, Decimal("Infinity"), client=c),
        "compare_and_delete expected=Decimal('NaN')": lambda c: lambda: atomicops.compare_and_delete("fz:k", Decimal("NaN"), client=c),
    }  # fmt: skip


def _held(lease):
    assert lease.acquire(blocking=False)
    return lease


@pytest.mark.parametrize("backend_kind", ["fakeredis", "real"])
@pytest.mark.parametrize("offender", list(offenders()))
def test_known_offender(offender, backend_kind, request, figures):
    figures("e. fuzz: known offenders (issue #11)", backend_kind)
    if backend_kind == "fakeredis":
        import fakeredis

        client = fakeredis.FakeRedis()
    else:
        client = redis.Redis(port=request.getfixturevalue("real_fuzz_server").port)
    client.flushall()
    client.set("fz:bystander", "untouched")
    try:
        call = offenders()[offender](client)
        before = snapshot(client)
        outcome: Any
        try:
            outcome = call()
        except Exception as exc:
            outcome = exc
        changes = diff(before, snapshot(client))
    finally:
        client.flushall()
        client.close()
    got = (
        f"{type(outcome).__name__}: {outcome}"
        if isinstance(outcome, Exception)
        else f"returned {outcome!r}"
    )
    assert isinstance(outcome, InvalidInput), f"{offender}: expected InvalidInput, {got}"
    assert not changes, f"{offender}: InvalidInput, yet the keyspace changed: {changes}"


def test_lock_names_from_pairs_do_not_collide(figures):
    """(User(pk="1:a"), "b"), (User(pk=1), "a:b") and "auth.user:1:a:b" are three locks."""
    import fakeredis

    figures("e. fuzz: known offenders (issue #11)", "fakeredis")
    User = users()
    client = fakeredis.FakeRedis()
    names = [(User(pk="1:a"), "b"), (User(pk=1), "a:b"), "auth.user:1:a:b"]
    for cls, extra in ((Lock, ()), (Semaphore, (1,))):
        leases = [cls(name, *extra, 10, client=client) for name in names]
        keys_used = {lease.key for lease in leases}
        assert len(keys_used) == 3, f"{cls.__name__}: the three names share keys: {keys_used}"
        granted = [lease.acquire(blocking=False) for lease in leases]
        assert granted == [True, True, True], f"{cls.__name__}: one name blocked another"
        for lease in leases:
            lease.release()
    counter_keys = {atomicops.key_for(i, n) for i, n in names[:2]}
    assert len(counter_keys) == 2, f"key_for collides: {counter_keys}"
