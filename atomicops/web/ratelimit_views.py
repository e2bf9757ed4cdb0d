"""``@rate_limit``: a per-view rate limit for sync and async Django views.

Each request is one script call (one round trip), however many limits are stacked
right on top of each other. A rejected request gets ``429`` with ``Retry-After`` and the ``RateLimit-Limit`` / ``RateLimit-Remaining`` /
``RateLimit-Reset`` headers (as JSON when the request's ``Accept`` asks for JSON, as
text otherwise); allowed responses carry the ``RateLimit-*`` headers too.
When Redis cannot be reached the request is let through or answered ``503``, as
``ATOMICOPS["RATELIMIT_FAIL_OPEN"]`` (or the decorator's ``fail_open``) says.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.cache import patch_vary_headers

from atomicops.conf import get_settings
from atomicops.engine import compat, connection, topology
from atomicops.engine.ops import Flow
from atomicops.engine.redaction import for_log
from atomicops.engine.run import arun, run
from atomicops.exceptions import CrossSlotError, InvalidInput, RedisUnavailable, ScriptBusyError
from atomicops.ops.observe import rate_limit_hit
from atomicops.primitives import calls, keys
from atomicops.primitives.calls import Call, call_flow
from atomicops.primitives.ratelimit import (
    STACK,
    RateLimitResult,
    StackedLimit,
    exact_window_call,
    fixed_window_call,
    sliding_window_call,
    stack_call,
    token_bucket_call,
)
from atomicops.web.identity import KeyFunc, aidentify, check_key, identify

__all__ = ["default_group", "limit_key", "rate_limit", "too_many_requests", "wants_json"]

logger = logging.getLogger("atomicops")

View = TypeVar("View", bound=Callable[..., Any])

ALGORITHMS = ("fixed_window", "sliding_window", "exact_window", "token_bucket")
# The groups of the limits stacked on a view. functools.wraps copies a function's __dict__,
# so each @rate_limit (and any decorator built with wraps) passes this on outwards.
STACK_ATTR = "_atomicops_rate_limit_groups"
# (wrapper, view, limits) on the wrapper of one or more @rate_limit: the next @rate_limit
# right on top of that wrapper (and only there: another decorator in between has to run
# between the limits) joins its limits, so a request is decided by all of them at once.
LIMITS_ATTR = "_atomicops_rate_limits"
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


def wants_json(request: HttpRequest | None) -> bool:
    """Whether ``request``'s ``Accept`` names JSON (``application/json`` or ``*/*+json``).

    Only an explicit mention counts: browsers send ``*/*`` and get text, API clients
    (``Accept: application/json``, axios' ``application/json, text/plain, */*``) JSON.
    """
    if request is None:
        return False
    for part in request.headers.get("Accept", "").split(","):
        media, *params = (piece.strip().lower() for piece in part.split(";"))
        if media != "application/json" and not media.endswith("+json"):
            continue
        quality = next((p[2:] for p in params if p.startswith("q=")), "1")
        try:
            if float(quality) > 0:
                return True
        except ValueError:
            continue
    return False


def _error_response(
    request: HttpRequest | None, status: int, detail: str, **fields: Any
) -> HttpResponse:
    if wants_json(request):
        response: HttpResponse = JsonResponse({"detail": detail, **fields}, status=status)
    else:
        response = HttpResponse(f"{detail}\n", status=status, content_type="text/plain")
    # The body depends on Accept: a cache must not hand the text one to an API client.
    patch_vary_headers(response, ["Accept"])
    return response


def too_many_requests(result: RateLimitResult, request: HttpRequest | None = None) -> HttpResponse:
    """The ``429`` response for a rejected hit, with ``Retry-After`` and ``RateLimit-*``.

    When ``request`` asks for JSON (:func:`wants_json`) the body is
    ``{"detail": ..., "retry_after": <s>, "limit": .., "remaining": .., "reset": <s>}``,
    else one line of text.
    """
    retry = max(1, _ceil_seconds(result.retry_after_ms))
    response = _error_response(
        request,
        429,
        f"Too many requests; retry in {retry} s.",
        retry_after=retry,
        limit=result.limit,
        remaining=result.remaining,
        reset=_ceil_seconds(result.reset_ms),
    )
    response["Retry-After"] = str(retry)
    set_headers(response, result)
    return response


def _unavailable_response(request: HttpRequest | None = None) -> HttpResponse:
    response = _error_response(
        request, 503, "Rate limit unavailable; retry shortly.", retry_after=1
    )
    response["Retry-After"] = "1"
    return response


def limit_key(algorithm: str, group: str, identity: str) -> str:
    """The Redis key of one client's count for one limit:
    ``<KEY_PREFIX>:rl:<algorithm>:{<group>|<identity>}`` (one hash tag, so one slot)."""
    return keys.tagged(f"rl:{algorithm}", f"{group}|{identity}")


def _describe_key(key: str | KeyFunc) -> str:
    if isinstance(key, str):
        return key
    # Named by where it is defined, never by repr(), which holds an address that differs
    # between processes. A callable object without a name is named by its class.
    named = key if hasattr(key, "__qualname__") else type(key)
    return f"{getattr(named, '__module__', '')}.{named.__qualname__}"


def default_group(
    view: Callable[..., Any],
    *,
    limit: int,
    window_ms: int | None = None,
    key: str | KeyFunc = "user",
    algorithm: str = "fixed_window",
    refill_rate: float | None = None,
    amount: int = 1,
    methods: Iterable[str] | None = None,
) -> str:
    """The group a ``@rate_limit`` without ``group=`` uses: ``<module>.<qualname>#<8 hex>``.

    The suffix is a digest of every argument that changes what is counted (algorithm,
    limit, window or refill rate, amount, key, methods), so two limits stacked on one view
    (a burst one and a sustained one) keep separate counts and windows. It is computed
    with SHA-256 from text that is the same in every process and after restarts, so
    counts survive deploys; changing one of those arguments starts that limit afresh
    (pass ``group=`` to keep a count across such changes). Raises :class:`InvalidInput`
    when ``view`` has no ``__qualname__`` (a ``functools.partial``): pass ``group=``.
    """
    qualname = getattr(view, "__qualname__", None)
    if qualname is None:
        # A repr would differ between processes, and so would the keys.
        raise InvalidInput(f"rate_limit on {view!r} needs group=: it has no __qualname__")
    verbs = "*" if methods is None else ",".join(sorted({m.upper() for m in methods}))
    rate = None if refill_rate is None else repr(float(refill_rate))
    described = (
        f"{algorithm} limit={limit} window_ms={window_ms} refill_rate={rate} "
        f"amount={amount} key={_describe_key(key)} methods={verbs}"
    )
    suffix = hashlib.sha256(described.encode()).hexdigest()[:8]
    return f"{view.__module__}.{qualname}#{suffix}"


def _hit_builder(
    algorithm: str,
    limit: int,
    window_ms: int | None,
    refill_rate: float | None,
    amount: int,
) -> Callable[[str], Call[RateLimitResult]]:
    if algorithm not in ALGORITHMS:
        raise InvalidInput(f"rate_limit algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    if algorithm == "token_bucket":
        if refill_rate is None or window_ms is not None:
            raise InvalidInput(
                "rate_limit(algorithm='token_bucket') takes refill_rate, not window_ms"
            )
        rate = refill_rate

        def build(key: str) -> Call[RateLimitResult]:
            return token_bucket_call(key, limit, rate, amount)

    else:
        if window_ms is None or refill_rate is not None:
            raise InvalidInput(
                f"rate_limit(algorithm={algorithm!r}) takes window_ms, not refill_rate"
            )
        window = window_ms
        make = {
            "fixed_window": fixed_window_call,
            "sliding_window": sliding_window_call,
            "exact_window": exact_window_call,
        }[algorithm]

        def build(key: str) -> Call[RateLimitResult]:
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

    ``key`` picks the client (see :mod:`atomicops.web.identity`): ``"user"`` (signed-in user,
    else the IP address), ``"ip"`` (``REMOTE_ADDR``; IPv4-mapped and NAT64 as IPv4, other
    IPv6 by /64), ``"header:<Name>"`` (that header, else the IP; only meaningful if the
    view authenticates it) or a callable ``request -> str | None`` (async views may pass
    an async one; ``None`` means not limited). Header and callable values are hashed
    before they reach a key. ``algorithm`` is ``"fixed_window"``, ``"sliding_window"``,
    ``"exact_window"`` (at most ``limit`` in any trailing ``window_ms``) or
    ``"token_bucket"`` (then ``limit`` is the capacity and ``refill_rate`` the tokens
    per second, instead of ``window_ms``). Views sharing a ``group`` share their limits;
    the default is the view's dotted name plus a digest of this limit's arguments (see
    :func:`default_group`), so stacked limits count apart. ``methods`` limits only those
    methods.
    ``client``: a redis-py client for sync views, a ``redis.asyncio`` one for async views
    (default: atomicops' configured client).

    One round trip per request, also for several ``@rate_limit`` stacked right on top of
    each other: they are decided together by one script, all-or-nothing (a request one
    refuses counts in none), and the headers describe the limit closest to refusing.
    (A stack that cannot be one script, with another decorator in between, different
    ``client=`` or, on a cluster, keys in different slots, checks its limits one by one
    as nested decorators do.) If one says fail closed, an unreachable Redis means 503.
    Rejected: ``429`` with ``Retry-After`` and
    ``RateLimit-*`` headers; ``request.ratelimit`` holds the :class:`RateLimitResult`.
    Redis unreachable: the view runs (fail open) or ``503`` (fail closed), per
    ``fail_open`` or ``ATOMICOPS["RATELIMIT_FAIL_OPEN"]``; either way it is logged.
    Raises :class:`InvalidInput` at decoration time for bad arguments, and for a group
    already limiting the view it decorates (two identical limits stacked).
    """
    check_key(key)
    build = _hit_builder(algorithm, limit, window_ms, refill_rate, amount)
    only = None if methods is None else frozenset(m.upper() for m in methods)

    def decorate(view: View) -> View:
        name = group or default_group(
            view,
            limit=limit,
            window_ms=window_ms,
            key=key,
            algorithm=algorithm,
            refill_rate=refill_rate,
            amount=amount,
            methods=only,
        )
        stack = getattr(view, STACK_ATTR, ())
        if name in stack:
            # Both would count each request in one key: twice the hits, one window.
            raise InvalidInput(
                f"rate_limit group {name!r} is stacked twice on "
                f"{getattr(view, '__qualname__', view)!r}; stacked limits need groups of their own"
            )
        this = Limit(
            name=name,
            algorithm=algorithm,
            key=key,
            limit=limit,
            period=refill_rate if algorithm == "token_bucket" else window_ms,  # type: ignore[arg-type]
            amount=amount,
            only=only,
            fail_open=fail_open,
            client=client,
            build=build,
        )
        joined = getattr(view, LIMITS_ATTR, None)
        if joined is not None and joined[0] is view:
            # Right on top of another @rate_limit: decide them together, around its view.
            base, limits = joined[1], (this, *joined[2])
        else:
            base, limits = view, (this,)
        wrapped = _limited(view, base, limits)
        setattr(wrapped, STACK_ATTR, (*stack, name))
        setattr(wrapped, LIMITS_ATTR, (wrapped, base, limits))
        return wrapped  # type: ignore[no-any-return]

    return decorate


@dataclass(frozen=True)
class Limit:
    """One ``@rate_limit`` as its wrapper applies it (what stacked limits are made of)."""

    name: str  # the group
    algorithm: str
    key: str | KeyFunc
    limit: int
    period: float  # window_ms, or a token bucket's refill_rate
    amount: int
    only: frozenset[str] | None  # the methods it limits, None for all
    fail_open: bool | None
    client: Any
    build: Callable[[str], Call[RateLimitResult]]

    def hit(self, ident: str) -> Call[RateLimitResult]:
        return self.build(limit_key(self.algorithm, self.name, ident))

    def stacked(self, ident: str) -> StackedLimit:
        key = limit_key(self.algorithm, self.name, ident)
        return StackedLimit(self.algorithm, key, self.limit, self.period, self.amount)

    def fails_open(self) -> bool:
        return get_settings()["RATELIMIT_FAIL_OPEN"] if self.fail_open is None else self.fail_open


Decided = list[tuple[Limit, RateLimitResult]]


def _unavailable(
    exc: Exception, limits: Iterable[Limit], request: HttpRequest
) -> HttpResponse | None:
    """None to let the request through (every limit fails open), else the 503."""
    limits = list(limits)
    opened = all(limit.fails_open() for limit in limits)
    logger.warning(
        "atomicops: rate limit %s not checked (%s); request %s",
        ", ".join(limit.name for limit in limits),
        for_log(exc),
        "let through (fail open)" if opened else "refused with 503 (fail closed)",
    )
    return None if opened else _unavailable_response(request)


def _together(active: list[tuple[Limit, str]], client: Any) -> bool:
    """Whether the limits can be one script call: one client, and on a cluster one slot."""
    first = active[0][0].client
    if any(limit.client is not first for limit, _ in active):
        return False
    if not compat.is_cluster_client(client):
        return True
    try:
        topology.slot_of([limit.stacked(ident).key for limit, ident in active], STACK)
    except CrossSlotError:
        return False  # different groups hash apart unless their keys share a tag
    return True


def _decide(active: list[tuple[Limit, str]], client_of: Callable[[Any], Any]) -> Flow[Decided]:
    """The verdicts of the active limits: one script for all of them when it can be,
    else one call each, in order, stopping at the first refusal (as nested wrappers did)."""
    client = client_of(active[0][0].client)
    if _together(active, client):
        call = stack_call([limit.stacked(ident) for limit, ident in active])
        results = yield from call_flow(call, client)
        return [(limit, result) for (limit, _), result in zip(active, results, strict=True)]
    decided: Decided = []
    for limit, ident in active:
        result = yield from call_flow(limit.hit(ident), client_of(limit.client))
        decided.append((limit, result))
        if not result.allowed:
            break
    return decided


def _verdict(decided: Decided, request: HttpRequest) -> RateLimitResult:
    """The result the response describes: the refusal with the longest wait, else the
    limit closest to refusing (fewest remaining)."""
    for limit, result in decided:
        rate_limit_hit(limit.name, result)
    refused = [result for _, result in decided if not result.allowed]
    if refused:
        chosen = max(refused, key=lambda result: result.retry_after_ms)
    else:
        chosen = min((result for _, result in decided), key=lambda result: result.remaining)
    request.ratelimit = chosen  # type: ignore[attr-defined]
    return chosen


def _limited(view: Any, base: Any, limits: tuple[Limit, ...]) -> Any:
    """``base`` behind ``limits`` (one wrapper however many are stacked); ``view`` is
    what the decorator was given, whose name and attributes the wrapper takes."""
    if len(limits) == 1:
        return _limited_once(view, limits[0])

    def active_for(request: HttpRequest, idents: list[str | None]) -> list[tuple[Limit, str]]:
        return [
            (limit, ident)
            for limit, ident in zip(limits, idents, strict=True)
            if ident is not None and (limit.only is None or request.method in limit.only)
        ]

    if iscoroutinefunction(base):

        async def async_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            idents = [
                await aidentify(request, limit.key)
                if limit.only is None or request.method in limit.only
                else None
                for limit in limits
            ]
            active = active_for(request, idents)
            if not active:
                return await base(request, *args, **kwargs)
            try:
                decided = await arun(_decide(active, connection.get_async_client))
            except _UNAVAILABLE as exc:
                refused = _unavailable(exc, (limit for limit, _ in active), request)
                return refused if refused is not None else await base(request, *args, **kwargs)
            chosen = _verdict(decided, request)
            if not chosen.allowed:
                return too_many_requests(chosen, request)
            response = await base(request, *args, **kwargs)
            set_headers(response, chosen)
            return response

        return wraps(view)(async_wrapper)

    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        idents = [
            identify(request, limit.key)
            if limit.only is None or request.method in limit.only
            else None
            for limit in limits
        ]
        active = active_for(request, idents)
        if not active:
            return base(request, *args, **kwargs)
        try:
            decided = run(_decide(active, connection.get_client))
        except _UNAVAILABLE as exc:
            refused = _unavailable(exc, (limit for limit, _ in active), request)
            return refused if refused is not None else base(request, *args, **kwargs)
        chosen = _verdict(decided, request)
        if not chosen.allowed:
            return too_many_requests(chosen, request)
        response = base(request, *args, **kwargs)
        set_headers(response, chosen)
        return response

    return wraps(view)(wrapper)


def _limited_once(view: Any, limit: Limit) -> Any:
    """One limit: one call of its own script (the common case, kept as direct as before)."""
    name, only, client = limit.name, limit.only, limit.client

    if iscoroutinefunction(view):

        async def async_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            if only is not None and request.method not in only:
                return await view(request, *args, **kwargs)
            ident = await aidentify(request, limit.key)
            if ident is None:
                return await view(request, *args, **kwargs)
            try:
                result = rate_limit_hit(name, await calls.asend(limit.hit(ident), client))
            except _UNAVAILABLE as exc:
                refused = _unavailable(exc, (limit,), request)
                return refused if refused is not None else await view(request, *args, **kwargs)
            request.ratelimit = result  # type: ignore[attr-defined]
            if not result.allowed:
                return too_many_requests(result, request)
            response = await view(request, *args, **kwargs)
            set_headers(response, result)
            return response

        return wraps(view)(async_wrapper)

    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        if only is not None and request.method not in only:
            return view(request, *args, **kwargs)
        ident = identify(request, limit.key)
        if ident is None:
            return view(request, *args, **kwargs)
        try:
            result = rate_limit_hit(name, calls.send(limit.hit(ident), client))
        except _UNAVAILABLE as exc:
            refused = _unavailable(exc, (limit,), request)
            return refused if refused is not None else view(request, *args, **kwargs)
        request.ratelimit = result  # type: ignore[attr-defined]
        if not result.allowed:
            return too_many_requests(result, request)
        response = view(request, *args, **kwargs)
        set_headers(response, result)
        return response

    return wraps(view)(wrapper)
