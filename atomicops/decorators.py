"""``@rate_limit``: a per-view rate limit for sync and async Django views.

Each request is one script call (one round trip). A rejected request gets ``429`` with
``Retry-After`` and the ``RateLimit-Limit`` / ``RateLimit-Remaining`` /
``RateLimit-Reset`` headers; allowed responses carry the ``RateLimit-*`` headers too.
When Redis cannot be reached the request is let through or answered ``503``, as
``ATOMICOPS["RATELIMIT_FAIL_OPEN"]`` (or the decorator's ``fail_open``) says.
"""

from __future__ import annotations

import inspect
import ipaddress
import logging
import math
from collections.abc import Awaitable, Callable, Iterable
from functools import wraps
from typing import Any, TypeVar

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponse

from atomicops import keys
from atomicops.calls import Call, arun, run
from atomicops.conf import get_settings
from atomicops.exceptions import InvalidInput, RedisUnavailable, ScriptBusyError
from atomicops.ratelimit import (
    RateLimitResult,
    _fixed_window_hit,
    _sliding_window_hit,
    _token_bucket_hit,
)

__all__ = ["rate_limit", "too_many_requests"]

logger = logging.getLogger("atomicops")

View = TypeVar("View", bound=Callable[..., Any])
KeyFunc = Callable[[HttpRequest], "str | None | Awaitable[str | None]"]

ALGORITHMS = ("fixed_window", "sliding_window", "token_bucket")
# A client usually controls a whole IPv6 /64: limiting single addresses in it would let
# one client rotate through 2^64 of them.
IPV6_PREFIX = 64
# Errors that mean "the limit could not be checked", as opposed to bugs (bad data,
# bad configuration), which are raised whatever fail_open says.
_UNAVAILABLE = (RedisUnavailable, ScriptBusyError)


def _ceil_seconds(ms: int) -> int:
    return max(0, math.ceil(ms / 1000))


def set_headers(response: HttpResponse, result: RateLimitResult) -> None:
    """Add the ``RateLimit-*`` headers; with several limits on one view the tightest wins."""
    existing = response.headers.get("RateLimit-Remaining")
    if existing is not None and existing.isdigit() and int(existing) <= result.remaining:
        return
    response["RateLimit-Limit"] = str(result.limit)
    response["RateLimit-Remaining"] = str(result.remaining)
    response["RateLimit-Reset"] = str(_ceil_seconds(result.reset_ms))


def too_many_requests(result: RateLimitResult) -> HttpResponse:
    """The ``429`` response for a rejected hit, with ``Retry-After`` and ``RateLimit-*``."""
    retry = max(1, _ceil_seconds(result.retry_after_ms))
    response = HttpResponse(
        f"Too many requests; retry in {retry} s.\n", status=429, content_type="text/plain"
    )
    response["Retry-After"] = str(retry)
    set_headers(response, result)
    return response


def _unavailable_response() -> HttpResponse:
    response = HttpResponse(
        "Rate limit unavailable; retry shortly.\n", status=503, content_type="text/plain"
    )
    response["Retry-After"] = "1"
    return response


def _client_ip(request: HttpRequest) -> str:
    """REMOTE_ADDR, IPv6 reduced to its /64. Behind a proxy, fix REMOTE_ADDR first."""
    raw = request.META.get("REMOTE_ADDR") or ""
    try:
        address = ipaddress.ip_address(raw)
    except ValueError:
        return raw or "unknown"
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/{IPV6_PREFIX}", strict=False))
    return str(address)


def _from_request(request: HttpRequest, key: str) -> str:
    """The identity for the keys that need no user: ``ip`` and ``header:<name>``."""
    if key.startswith("header:"):
        value = request.headers.get(key[len("header:") :])
        # Without the header fall back to the address, so clients that omit it do not
        # all share one limit (and one abuser cannot use it up for everyone).
        return f"header:{value}" if value else f"ip:{_client_ip(request)}"
    return f"ip:{_client_ip(request)}"


def _from_user(request: HttpRequest, user: Any) -> str:
    if user is not None and getattr(user, "is_authenticated", False):
        return f"user:{user.pk}"
    return f"ip:{_client_ip(request)}"


def _identity(request: HttpRequest, key: str | KeyFunc) -> str | None:
    if callable(key):
        value = key(request)
        return None if value is None else f"key:{value}"
    if key == "user":
        return _from_user(request, getattr(request, "user", None))
    return _from_request(request, key)


async def _aidentity(request: HttpRequest, key: str | KeyFunc) -> str | None:
    if callable(key):
        value = key(request)
        if inspect.isawaitable(value):
            value = await value
        return None if value is None else f"key:{value}"
    if key == "user":
        # request.user would hit the database synchronously, which async code may not.
        auser = getattr(request, "auser", None)
        if auser is not None:
            return _from_user(request, await auser())
        # Django 4.2 has no request.auser(): resolve the lazy user in a thread.
        return await sync_to_async(_identity)(request, key)
    return _from_request(request, key)


def _check_key(key: Any) -> None:
    if callable(key):
        return
    if key in ("user", "ip") or (
        isinstance(key, str) and key.startswith("header:") and len(key) > len("header:")
    ):
        return
    raise InvalidInput(
        f"rate_limit key must be 'user', 'ip', 'header:<Name>' or a callable, got {key!r}"
    )


def _hit_builder(
    algorithm: str,
    limit: int,
    window_ms: int | None,
    refill_rate: float | None,
    amount: int,
) -> Callable[[str], Call]:
    if algorithm not in ALGORITHMS:
        raise InvalidInput(f"rate_limit algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    if algorithm == "token_bucket":
        if refill_rate is None or window_ms is not None:
            raise InvalidInput(
                "rate_limit(algorithm='token_bucket') takes refill_rate, not window_ms"
            )
        rate = refill_rate

        def build(key: str) -> Call:
            return _token_bucket_hit(key, limit, rate, amount)

    else:
        if window_ms is None or refill_rate is not None:
            raise InvalidInput(
                f"rate_limit(algorithm={algorithm!r}) takes window_ms, not refill_rate"
            )
        window = window_ms
        make = _fixed_window_hit if algorithm == "fixed_window" else _sliding_window_hit

        def build(key: str) -> Call:
            return make(key, limit, window, amount)

    build("@rate_limit")  # bad numbers fail when the view is decorated, not on a request
    return build


def rate_limit(
    limit: int,
    window_ms: int | None = None,
    *,
    key: str | KeyFunc = "user",
    algorithm: str = "fixed_window",
    refill_rate: float | None = None,
    amount: int = 1,
    group: str | None = None,
    methods: Iterable[str] | None = None,
    fail_open: bool | None = None,
    client: Any = None,
) -> Callable[[View], View]:
    """Limit a view (sync or async) to ``limit`` hits per ``window_ms`` per client.

    ``key`` picks the client: ``"user"`` (signed-in user, else the IP address), ``"ip"``
    (``REMOTE_ADDR``, IPv6 by /64), ``"header:<Name>"`` (that header, else the IP) or a
    callable ``request -> str | None`` (async views may pass an async one; ``None``
    means not limited). ``algorithm`` is ``"fixed_window"``, ``"sliding_window"`` or
    ``"token_bucket"`` (then ``limit`` is the capacity and ``refill_rate`` the tokens per
    second, instead of ``window_ms``). Views sharing a ``group`` share their limits (the
    default group is the view's dotted name). ``methods`` limits only those methods.
    ``client``: a redis-py client for sync views, a ``redis.asyncio`` one for async views
    (default: atomicops' configured client).

    One round trip per request. Rejected: ``429`` with ``Retry-After`` and
    ``RateLimit-*`` headers; ``request.ratelimit`` holds the :class:`RateLimitResult`.
    Redis unreachable: the view runs (fail open) or ``503`` (fail closed), per
    ``fail_open`` or ``ATOMICOPS["RATELIMIT_FAIL_OPEN"]``; either way it is logged.
    Raises :class:`InvalidInput` at decoration time for bad arguments.
    """
    _check_key(key)
    build = _hit_builder(algorithm, limit, window_ms, refill_rate, amount)
    only = None if methods is None else frozenset(m.upper() for m in methods)
    kind = f"rl:{algorithm}"

    def should_fail_open() -> bool:
        return get_settings()["RATELIMIT_FAIL_OPEN"] if fail_open is None else fail_open

    def on_unavailable(exc: Exception, name: str) -> HttpResponse | None:
        opened = should_fail_open()
        logger.warning(
            "atomicops: rate limit %s not checked (%s); request %s",
            name,
            exc,
            "let through (fail open)" if opened else "refused with 503 (fail closed)",
        )
        return None if opened else _unavailable_response()

    def decorate(view: View) -> View:
        qualname = getattr(view, "__qualname__", None)
        if group is None and qualname is None:
            # A repr would differ between processes, and so would the keys.
            raise InvalidInput(f"rate_limit on {view!r} needs group=: it has no __qualname__")
        name = group or f"{view.__module__}.{qualname}"

        def hit_for(ident: str) -> Call:
            return build(keys.tagged(kind, f"{name}|{ident}"))

        if iscoroutinefunction(view):

            async def async_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
                if only is not None and request.method not in only:
                    return await view(request, *args, **kwargs)
                ident = await _aidentity(request, key)
                if ident is None:
                    return await view(request, *args, **kwargs)
                try:
                    result = await arun(hit_for(ident), client)
                except _UNAVAILABLE as exc:
                    refused = on_unavailable(exc, name)
                    return refused if refused is not None else await view(request, *args, **kwargs)
                request.ratelimit = result  # type: ignore[attr-defined]
                if not result.allowed:
                    return too_many_requests(result)
                response = await view(request, *args, **kwargs)
                set_headers(response, result)
                return response

            return wraps(view)(async_wrapper)  # type: ignore[return-value]

        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            if only is not None and request.method not in only:
                return view(request, *args, **kwargs)
            ident = _identity(request, key)
            if ident is None:
                return view(request, *args, **kwargs)
            try:
                result = run(hit_for(ident), client)
            except _UNAVAILABLE as exc:
                refused = on_unavailable(exc, name)
                return refused if refused is not None else view(request, *args, **kwargs)
            request.ratelimit = result  # type: ignore[attr-defined]
            if not result.allowed:
                return too_many_requests(result)
            response = view(request, *args, **kwargs)
            set_headers(response, result)
            return response

        return wraps(view)(wrapper)  # type: ignore[return-value]

    return decorate
