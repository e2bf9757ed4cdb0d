"""Django REST framework throttles that do not race: drop-in for ``rest_framework.throttling``.

DRF's throttles read a client's list of timestamps from the cache, decide, append and
write the list back: two concurrent requests both read the same list, both pass, and one
write is lost, so a busy client gets more than its rate. These classes keep DRF's API
(rate strings such as ``"100/min"``, ``scope``, ``DEFAULT_THROTTLE_RATES``,
``throttle_scope`` on views, ``get_cache_key()``, ``wait()``, ``history``, ``now``) and
DRF's algorithm (at most N admitted requests in any trailing window), deciding each
request with one exact-window script call: one round trip, atomic, so the rate holds
whatever the concurrency. DRF's own tests/test_throttling.py runs against them
(tests/drf_upstream/).

Importing this module imports DRF; nothing else in atomicops does. See docs/drf.md.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, overload

from django.core.exceptions import ImproperlyConfigured
from rest_framework import throttling
from rest_framework.exceptions import APIException
from rest_framework.settings import api_settings

from atomicops.conf import get_settings
from atomicops.engine.redaction import for_log
from atomicops.exceptions import RedisUnavailable, ScriptBusyError
from atomicops.ops.observe import rate_limit_hit
from atomicops.primitives import keys
from atomicops.primitives.calls import send
from atomicops.primitives.ratelimit import ExactWindow, RateLimitResult, exact_log_call
from atomicops.primitives.validate import MAX_EXACT
from atomicops.web.identity import client_address, digest, proxy_settings, request_address

__all__ = [
    "AnonRateThrottle",
    "ScopedRateThrottle",
    "SimpleRateThrottle",
    "ThrottleHistory",
    "ThrottleUnavailable",
    "UserRateThrottle",
]

logger = logging.getLogger("atomicops")

# Errors that mean "the limit could not be checked" (as in @rate_limit); others are bugs.
_UNAVAILABLE = (RedisUnavailable, ScriptBusyError)


class ThrottleUnavailable(APIException):
    """503: the throttle could not be checked and the throttle fails closed."""

    status_code = 503
    default_detail = "Rate limit unavailable; retry shortly."
    default_code = "throttle_unavailable"


class _LiveRates(Mapping[str, Any]):
    """``api_settings.DEFAULT_THROTTLE_RATES`` read on each use.

    DRF copies the dict into ``THROTTLE_RATES`` when its module is imported, so
    ``override_settings(REST_FRAMEWORK=...)`` never reaches it; reading it live does.
    """

    def _rates(self) -> Mapping[str, Any]:
        return api_settings.DEFAULT_THROTTLE_RATES or {}

    def __getitem__(self, scope: str) -> Any:
        return self._rates()[scope]

    def __iter__(self) -> Iterator[str]:
        return iter(self._rates())

    def __len__(self) -> int:
        return len(self._rates())

    def __repr__(self) -> str:
        return f"<DEFAULT_THROTTLE_RATES {dict(self._rates())!r}>"


class ThrottleHistory(Sequence[float]):
    """``throttle.history`` for a log too long to send whole: DRF's list, read-only.

    ``len()`` is the number of admitted requests in the window, ``[0]`` the newest and
    ``[-1]`` the oldest one's time (seconds, as DRF's ``timer()``), exactly; indices
    inside the newest ``history_runs`` runs of the log are exact too, others (and
    iteration past them) raise / stop with ``IndexError``. What DRF's ``wait()`` and the
    usual ``num_requests - len(history)`` recipes read is always there.
    """

    __slots__ = ("_count", "_oldest", "_runs")

    def __init__(self, runs: list[tuple[float, int]], count: int, oldest: float) -> None:
        self._runs, self._count, self._oldest = runs, count, oldest

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> float: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[float]: ...
    def __getitem__(self, index: int | slice) -> float | Sequence[float]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._count))]
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError("throttle history index out of range")
        if index == self._count - 1:
            return self._oldest
        for at, hits in self._runs:
            if index < hits:
                return at
            index -= hits
        raise IndexError("throttle history: only the newest runs were read (history_runs)")

    def __repr__(self) -> str:
        return f"<ThrottleHistory {self._count} requests, oldest {self._oldest}>"


# Tests only: when True, the throttles send ``timer()`` to the script as the time instead
# of the server's TIME, so DRF's own tests can drive a fake clock. Set through
# atomicops.testing's ``atomicops_throttle_timer`` fixture; never in production.
TIMER_CLOCK = False


class SimpleRateThrottle(throttling.SimpleRateThrottle):
    """DRF's ``SimpleRateThrottle`` with one atomic script call per request.

    Subclass it as DRF's: set ``scope`` (rates from ``DEFAULT_THROTTLE_RATES``) or
    ``rate``, and implement ``get_cache_key(request, view)`` (``None``: not throttled).

    The algorithm is DRF's, exactly: a request is admitted if fewer than ``num_requests``
    admitted requests of this key lie in the last ``duration`` seconds (a log of their
    times; rejected requests are not counted). The log is atomicops' exact window
    (:func:`atomicops.exact_window`) in Redis, on the server's clock: one script call
    decides, records and returns, so the rate holds whatever the concurrency. After
    each check ``history`` (admitted times in the window, newest first, in seconds) and
    ``now`` are set as DRF sets them, so DRF's ``wait()`` (inherited, unchanged) and
    overrides reading them work; ``result`` holds the :class:`RateLimitResult`.

    ``get_ident()`` follows ``ATOMICOPS["TRUSTED_PROXY_COUNT"]`` / ``["CLIENT_IP_HEADER"]``
    when one is set, else DRF's ``NUM_PROXIES``; see docs/drf.md. Keys are
    ``<KEY_PREFIX>:throttle:{<cache key>}``.

    When Redis cannot be reached the request is let through or answered ``503``
    (:class:`ThrottleUnavailable`) as ``fail_open`` (``None``: the
    ``RATELIMIT_FAIL_OPEN`` setting) says; either way it is logged. ``client``: a redis-py
    client to use instead of atomicops' configured one.
    """

    THROTTLE_RATES: Mapping[str, Any] = _LiveRates()
    fail_open: bool | None = None
    client: Any = None
    result: RateLimitResult | None = None
    # Set by allow_request, as DRF sets them (annotations only: unset before a check).
    history: Sequence[float]
    now: float
    # How many runs of the log (one per server ms with admitted requests) each check
    # reads back to build ``history``; past it, ``history`` is a ThrottleHistory.
    history_runs: int = 100

    def get_ident(self, request: Any) -> str | None:
        """The client's address, plain (``203.0.113.7``; IPv6 by /64), as DRF gives it.

        With ``ATOMICOPS["TRUSTED_PROXY_COUNT"]`` or ``["CLIENT_IP_HEADER"]`` set, the
        address they name (:func:`atomicops.web.identity.request_address`); else with DRF's
        ``NUM_PROXIES`` set, DRF's choice from ``X-Forwarded-For``; else ``REMOTE_ADDR``
        (DRF would take the whole ``X-Forwarded-For``, which the client writes).
        """
        hops, header = proxy_settings()
        if hops or header is not None:
            raw: str | None = request_address(request) or None
        elif api_settings.NUM_PROXIES is not None:
            raw = super().get_ident(request)
        else:
            raw = request.META.get("REMOTE_ADDR")
        if not raw:
            return raw
        address = client_address(raw)
        # Not an address (a proxy or client wrote something else): a digest, so whatever
        # it was neither lengthens the key nor shows in it.
        return address if address is not None else f"addr:{digest(raw)}"

    def redis_key(self, cache_key: str) -> str:
        """The Redis key for DRF's cache key: prefixed, escaped, one hash tag."""
        return keys.tagged("throttle", cache_key)

    def allow_request(self, request: Any, view: Any) -> bool:
        """One exact-window hit for this request's key; ``True`` if it is admitted."""
        self.result = None
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        if self.num_requests > MAX_EXACT:
            raise ImproperlyConfigured(
                f"throttle rate {self.rate!r} of {type(self).__name__}: at most 2**53 - 1 "
                "requests (see check atomicops.E009)"
            )
        if self.num_requests <= 0:  # "0/min": nothing is admitted, and nothing to count
            self.history, self.now = [], self.timer()
            return self.throttle_failure()
        clock = round(self.timer() * 1000) if TIMER_CLOCK else None
        try:
            call = exact_log_call(
                self.redis_key(self.key),
                self.num_requests,
                round(self.duration * 1000),
                1,
                history=max(1, self.history_runs),  # [0] must be the newest
                clock_ms=clock,
            )
            log = send(call, self.client)
        except _UNAVAILABLE as exc:
            self.history, self.now = [], self.timer()
            return self._unavailable(exc)
        # Counted per scope in the metrics (as @rate_limit counts per group), not all
        # throttles under the function's name.
        group = f"drf:{getattr(self, 'scope', None) or type(self).__name__}"
        self.result = rate_limit_hit(group, log.result)
        self.now = log.now_ms / 1000
        self.history = _history(log)
        return self.throttle_success() if self.result.allowed else self.throttle_failure()

    def throttle_success(self) -> bool:
        # DRF records the request here; the script already has.
        return True

    def throttle_failure(self) -> bool:
        return False

    def _unavailable(self, exc: Exception) -> bool:
        opened = get_settings()["RATELIMIT_FAIL_OPEN"] if self.fail_open is None else self.fail_open
        logger.warning(
            "atomicops: throttle %s not checked (%s); request %s",
            type(self).__name__,
            for_log(exc),
            "let through (fail open)" if opened else "refused with 503 (fail closed)",
        )
        if not opened:
            raise ThrottleUnavailable() from exc
        return True


def _history(log: ExactWindow) -> list[float] | ThrottleHistory:
    """DRF's ``history`` (admitted times, newest first, seconds) from the script's runs."""
    count = log.result.count
    runs = [(ms / 1000, hits) for ms, hits in log.runs]
    if sum(hits for _, hits in runs) == count and count <= _HISTORY_LIST:
        return [at for at, hits in runs for _ in range(hits)]
    return ThrottleHistory(runs, count, log.oldest_ms / 1000)


# A complete history up to this many requests is a plain list, as DRF's; longer ones (a
# 30000000/day client) stay run-length encoded in a ThrottleHistory.
_HISTORY_LIST = 10_000


class AnonRateThrottle(SimpleRateThrottle, throttling.AnonRateThrottle):
    """DRF's ``AnonRateThrottle`` (scope ``"anon"``: anonymous clients by address), atomic."""

    # Restated: SimpleRateThrottle comes first in the MRO, so a scope set on it (DRF's own
    # tests do, SimpleRateThrottle.scope = "anon") would hide DRF's class attribute.
    scope = "anon"


class UserRateThrottle(SimpleRateThrottle, throttling.UserRateThrottle):
    """DRF's ``UserRateThrottle`` (scope ``"user"``: the user's pk, else the address), atomic."""

    scope = "user"  # restated, as AnonRateThrottle's


class ScopedRateThrottle(SimpleRateThrottle, throttling.ScopedRateThrottle):
    """DRF's ``ScopedRateThrottle`` (the view's ``throttle_scope``), atomic."""

    def allow_request(self, request: Any, view: Any) -> bool:
        # As DRF's: the scope, and so the rate, is known only once a view calls.
        self.result = None
        self.scope = getattr(view, self.scope_attr, None)
        if not self.scope:
            return True
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)
