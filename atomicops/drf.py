"""Django REST framework throttles that do not race: drop-in for ``rest_framework.throttling``.

DRF's throttles read a client's list of timestamps from the cache, decide, append and
write the list back: two concurrent requests both read the same list, both pass, and one
write is lost, so a busy client gets more than its rate. These classes keep DRF's API
(rate strings such as ``"100/min"``, ``scope``, ``DEFAULT_THROTTLE_RATES``,
``throttle_scope`` on views, ``get_cache_key()``, ``wait()``) and decide each request with
one sliding-window script call: one round trip, atomic, so the rate holds whatever the
concurrency.

Importing this module imports DRF; nothing else in atomicops does. See docs/drf.md.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

from rest_framework import throttling
from rest_framework.exceptions import APIException
from rest_framework.settings import api_settings

from atomicops import keys
from atomicops.calls import run
from atomicops.conf import get_settings
from atomicops.exceptions import RedisUnavailable, ScriptBusyError
from atomicops.identity import client_ip
from atomicops.observe import rate_limit_hit
from atomicops.ratelimit import RateLimitResult, sliding_window_call

__all__ = [
    "AnonRateThrottle",
    "ScopedRateThrottle",
    "SimpleRateThrottle",
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


class SimpleRateThrottle(throttling.SimpleRateThrottle):
    """DRF's ``SimpleRateThrottle`` with one atomic script call per request.

    Subclass it as DRF's: set ``scope`` (rates from ``DEFAULT_THROTTLE_RATES``) or
    ``rate``, and implement ``get_cache_key(request, view)`` (``None``: not throttled).

    The algorithm is atomicops' sliding window (:func:`atomicops.sliding_window`): DRF
    keeps a log of timestamps per client, which is exact but O(rate) in memory and racy;
    the sliding window keeps two counters and weighs the previous fixed window by how
    much of it is still inside the sliding one. Like DRF, rejected requests are not
    counted. It differs from the log only when the previous window's requests were not
    spread evenly (see docs/drf.md).

    ``get_ident()`` is :func:`atomicops.identity.client_ip` (IPv6 by /64, proxies per
    ``ATOMICOPS["TRUSTED_PROXY_COUNT"]`` / ``["CLIENT_IP_HEADER"]``; DRF's ``NUM_PROXIES``
    is not read). Keys are ``<KEY_PREFIX>:throttle:{<cache key>}``.

    When Redis cannot be reached the request is let through or answered ``503``
    (:class:`ThrottleUnavailable`) as ``fail_open`` (``None``: the
    ``RATELIMIT_FAIL_OPEN`` setting) says; either way it is logged. ``client``: a redis-py
    client to use instead of atomicops' configured one.
    """

    THROTTLE_RATES: Mapping[str, Any] = _LiveRates()
    fail_open: bool | None = None
    client: Any = None
    result: RateLimitResult | None = None

    def get_ident(self, request: Any) -> str:
        """The client's address identity (``ip:203.0.113.7``); see :mod:`atomicops.identity`."""
        return client_ip(request)

    def redis_key(self, cache_key: str) -> str:
        """The Redis key for DRF's cache key: prefixed, escaped, one hash tag."""
        return keys.tagged("throttle", cache_key)

    def allow_request(self, request: Any, view: Any) -> bool:
        """One sliding-window hit for this request's key; ``True`` if it is admitted."""
        self.result = None
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        window_ms = round(self.duration * 1000)
        if not self.num_requests:  # "0/min": nothing is admitted, and nothing to count
            self.result = RateLimitResult(
                allowed=False,
                count=0,
                remaining=0,
                reset_ms=window_ms,
                limit=0,
                retry_after_ms=window_ms,
                key=self.key,
            )
            return self.throttle_failure()
        try:
            # Counted per scope in the metrics (as @rate_limit counts per group), not all
            # throttles under the function's name.
            call = sliding_window_call(self.redis_key(self.key), self.num_requests, window_ms, 1)
            group = f"drf:{getattr(self, 'scope', None) or type(self).__name__}"
            self.result = rate_limit_hit(group, run(call, self.client))
        except _UNAVAILABLE as exc:
            return self._unavailable(exc)
        return self.throttle_success() if self.result.allowed else self.throttle_failure()

    def throttle_success(self) -> bool:
        return True

    def throttle_failure(self) -> bool:
        return False

    def wait(self) -> float | None:
        """Seconds until this client's next request could be admitted (0 after an admitted
        one); ``None`` before any request was checked."""
        if self.result is None:
            return None
        return self.result.retry_after_ms / 1000

    def _unavailable(self, exc: Exception) -> bool:
        opened = get_settings()["RATELIMIT_FAIL_OPEN"] if self.fail_open is None else self.fail_open
        logger.warning(
            "atomicops: throttle %s not checked (%s); request %s",
            type(self).__name__,
            exc,
            "let through (fail open)" if opened else "refused with 503 (fail closed)",
        )
        if not opened:
            raise ThrottleUnavailable() from exc
        return True


class AnonRateThrottle(SimpleRateThrottle, throttling.AnonRateThrottle):
    """DRF's ``AnonRateThrottle`` (scope ``"anon"``: anonymous clients by address), atomic."""


class UserRateThrottle(SimpleRateThrottle, throttling.UserRateThrottle):
    """DRF's ``UserRateThrottle`` (scope ``"user"``: the user's pk, else the address), atomic."""


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
