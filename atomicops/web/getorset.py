"""``get_or_set``: Django's ``cache.get_or_set`` without the stampede.

The value lives in a Django cache (any backend); atomicops only coordinates who computes
it, in Redis:

* ``<KEY_PREFIX>:gos:{<digest>}``: the claim, a hash ``{owner, w}`` while one caller
  computes (its TTL is the lease, renewed while ``compute()`` runs; ``w`` counts the
  waiters), then ``{done}`` for a moment after the value was stored, so a caller that
  missed the cache just before does not compute it again. The digest is of the cache
  alias and the cache's own key (prefix and version included): bounded, whatever the key;
* ``<KEY_PREFIX>:gos:{<digest>}:wake:<owner>``: that computation's wake-up list. Its end
  pushes one token per waiter, so every waiter's ``BLPOP`` returns at once; a list per
  computation means a token nobody took can never wake a later computation's waiters.

A hit is one cache ``get``, nothing else. A miss adds one round trip to Redis before
``compute()`` (the claim) and one after it (storing done and waking the waiters); a
waiter's miss adds the claim and its wait.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from django.core.cache import InvalidCacheBackendError, caches
from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache

from atomicops.conf import get_settings
from atomicops.engine import connection
from atomicops.engine import run as engine_run
from atomicops.engine.redaction import for_log, key_digest
from atomicops.exceptions import AtomicOpsError, InvalidInput, OutcomeUnknown, RedisUnavailable
from atomicops.leases import claims
from atomicops.leases.lease import wake_wait
from atomicops.primitives.validate import MAX_LEASE_MS
from atomicops.scripts.registry import registry
from atomicops.web.identity import digest

__all__ = ["aget_or_set", "claim_key", "get_or_set"]

logger = logging.getLogger("atomicops")

# How long, after a value was stored, a caller that missed the cache is told to read it
# again rather than claim: covers the gap between a caller's miss and its claim.
FRESH_MS = 2000
# How long wake-up tokens nobody took stay (a waiter between its claim and its BLPOP).
WAKE_TTL_MS = 10_000
# A waiter waits until a hair after the computing caller's lease would end.
_PAST_LEASE_S = 0.005
_MISSING = object()


def claim_key(alias: str, cache_key: str) -> str:
    """The claim's Redis key for the cache entry ``cache_key`` (the cache's made key)."""
    prefix = get_settings()["KEY_PREFIX"]
    scope = digest(alias + "\n" + cache_key)
    return f"{prefix}:gos:{{{scope}}}"


def _wake_key(claim: str, owner: str) -> str:
    return f"{claim}:wake:{owner}"


@dataclass
class _Plan:
    cache: BaseCache
    alias: str
    key: str  # the caller's cache key
    timeout: Any  # as Django's cache.set takes it
    lease_ms: int
    fresh_ms: int
    client: Any

    @cached_property
    def claim(self) -> str:
        # Only a miss needs it: a hit stays the cache's get and nothing else.
        return claim_key(self.alias, self.cache.make_key(self.key))


def _checked(
    key: Any, compute: Any, timeout: Any, cache: Any, lease: Any, *, sync: bool
) -> BaseCache:
    """The cache backend, once every argument is checked; :class:`InvalidInput` otherwise.

    Kept to plain type checks: it runs on every hit, which is otherwise one cache get.
    """
    if not isinstance(key, str) or not key:
        raise InvalidInput(f"get_or_set key must be a non-empty string, got {key!r}")
    if not callable(compute):
        raise InvalidInput(f"get_or_set compute must be callable, got {compute!r}", key=key)
    if sync and inspect.iscoroutinefunction(compute):
        raise InvalidInput("get_or_set got an async compute(); use aget_or_set", key=key)
    if timeout is not None and timeout is not DEFAULT_TIMEOUT:
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            or not 0 < timeout < math.inf
        ):
            raise InvalidInput(
                "get_or_set timeout must be seconds > 0, None (forever) or DEFAULT_TIMEOUT, "
                f"got {timeout!r}: with 0 nothing is cached and every caller would compute "
                "in turn",
                key=key,
            )
    if isinstance(lease, bool) or not isinstance(lease, (int, float)) or lease != lease:
        raise InvalidInput(f"get_or_set lease must be a number of seconds, got {lease!r}", key=key)
    if not 0 < lease <= MAX_LEASE_MS / 1000:
        raise InvalidInput(
            f"get_or_set lease must be > 0 and at most {MAX_LEASE_MS // 1000} seconds, got {lease!r}",
            key=key,
        )
    if not isinstance(cache, str):
        raise InvalidInput(f"get_or_set cache must be a CACHES alias, got {cache!r}", key=key)
    try:
        return caches[cache]
    except InvalidCacheBackendError as exc:
        raise InvalidInput(f"get_or_set cache {cache!r} is not in CACHES", key=key) from exc


def _plan(
    backend: BaseCache, alias: str, key: str, timeout: Any, lease: float, client: Any
) -> _Plan:
    """What a miss needs, from arguments :func:`_checked` accepted."""
    fresh_ms = FRESH_MS
    if timeout is not None and timeout is not DEFAULT_TIMEOUT:
        fresh_ms = max(1, min(FRESH_MS, math.floor(timeout * 1000)))
    return _Plan(
        cache=backend,
        alias=alias,
        key=key,
        timeout=timeout,
        lease_ms=max(1, math.ceil(lease * 1000)),
        fresh_ms=fresh_ms,
        client=client,
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _flow(plan: _Plan, client: Any) -> claims.Flow[Any]:
    """One caller's decisions after a miss, written once for sync and async: the scripts'
    and the wake-up wait's flows on ``client``, and ``("get",)``, ``("set", value)``,
    ``("compute", owner)`` for the runner's ``perform`` (the cache and the caller's code)."""
    force = False
    while True:
        owner = claims.new_owner()
        try:
            reply = yield from _script(plan, client, ("claim", owner, force))
        except OutcomeUnknown:
            # The claim may be ours: compute as its owner (done is fenced by the token,
            # so if it was not ours, ending it changes nothing).
            reply = [1]
        except RedisUnavailable as exc:
            return (yield from _uncoordinated(plan, exc))
        state = int(reply[0])
        if state == 1:
            return (yield from _compute(plan, client, owner))
        if state == 0:
            pttl = int(reply[2])
            seconds = pttl / 1000 + _PAST_LEASE_S if pttl > 0 else plan.lease_ms / 1000
            try:
                yield from wake_wait(client, _wake_key(plan.claim, _text(reply[1])), seconds)
            except RedisUnavailable as exc:
                return (yield from _uncoordinated(plan, exc))
        # Woken, or a value was stored moments ago: read it.
        value = yield ("get",)
        if value is not _MISSING:
            return value
        # Still missing: the computation failed, or its value could not be cached (too
        # big, evicted). Claim even over the "just stored" marker.
        force = True


def _compute(plan: _Plan, client: Any, owner: str) -> claims.Flow[Any]:
    try:
        value = yield ("compute", owner)
        yield ("set", value)
    except BaseException:
        # The waiters wake, miss, and one of them computes: the caller gets the error.
        yield from _script(plan, client, ("done", owner, False))
        raise
    yield from _script(plan, client, ("done", owner, True))
    return value


def _uncoordinated(plan: _Plan, exc: AtomicOpsError) -> claims.Flow[Any]:
    # The cache may well be up: serve like Django's get_or_set rather than fail the page.
    logger.warning(
        "atomicops: get_or_set(key %s) computes without coordination; Redis: %s",
        key_digest(plan.key),
        for_log(exc),
    )
    value = yield ("compute", None)
    yield ("set", value)
    return value


def _script(plan: _Plan, client: Any, op: claims.Op) -> claims.Flow[Any]:
    """The claim's script as a flow; a failed ``done`` is logged (waiters then read the
    cache when their wait ends), a failed claim is the caller's."""
    name, keys, args = _script_call(plan, op)
    try:
        return (yield from registry.get(name).flow(keys, args, client))
    except AtomicOpsError as exc:
        if op[0] == "claim":
            raise
        _done_failed(plan, exc)
        return None


def _script_call(plan: _Plan, op: claims.Op) -> tuple[str, list[str], list[Any]]:
    if op[0] == "claim":
        return "getorset_claim", [plan.claim], [op[1], plan.lease_ms, 1 if op[2] else 0]
    owner, stored = op[1], op[2]
    return (
        "getorset_done",
        [plan.claim, _wake_key(plan.claim, owner)],
        [owner, 1 if stored else 0, plan.fresh_ms, WAKE_TTL_MS],
    )


def _done_failed(plan: _Plan, exc: AtomicOpsError) -> None:
    logger.warning(
        "atomicops: get_or_set(key %s) could not wake its waiters (%s); they read the cache "
        "when their wait ends",
        key_digest(plan.key),
        for_log(exc),
    )


def get_or_set(
    key: str,
    compute: Callable[[], Any],
    timeout: Any,
    *,
    cache: str = "default",
    lease: float = 30,
    client: Any = None,
) -> Any:
    """The value of ``key`` in the Django cache ``cache``; on a miss, ``compute()``'s,
    computed by one caller at a time across all processes and stored for ``timeout``.

    A hit is the cache's ``get`` alone. On a miss one caller claims the computation (one
    round trip to Redis), runs ``compute()``, stores the value with ``cache.set`` and
    wakes every waiter (one more round trip); the other callers block on a wake-up list
    (``BLPOP``, not polling) and return the stored value when woken. The claim's lease
    is renewed in the background while ``compute()`` runs; if the computing process
    dies, another caller takes over once ``lease`` seconds pass. If ``compute()`` raises,
    that caller gets the exception and the waiters try again (one of them computes).

    ``timeout``: seconds > 0, ``None`` (forever) or Django's ``DEFAULT_TIMEOUT``. Values
    may be anything the cache stores, ``None`` included. When Redis cannot be reached
    the caller computes and stores without coordination (logged), as Django's own
    ``get_or_set`` would. Raises :class:`InvalidInput` for bad arguments, before
    anything is read or sent.
    """
    backend = _checked(key, compute, timeout, cache, lease, sync=True)
    value = backend.get(key, _MISSING)
    if value is not _MISSING:
        return value
    plan = _plan(backend, cache, key, timeout, lease, client)

    def perform(op: claims.Op) -> Any:  # the cache and the caller's code
        kind = op[0]
        if kind == "get":
            return plan.cache.get(plan.key, _MISSING)
        if kind == "set":
            return plan.cache.set(plan.key, op[1], timeout=plan.timeout)
        if op[1] is None:  # ("compute", None): uncoordinated
            return compute()
        held = claims.hold(plan.claim, op[1], plan.lease_ms, plan.client)
        try:
            return compute()
        finally:
            held.stop()

    return engine_run.run(_flow(plan, connection.get_client(plan.client)), perform)


async def aget_or_set(
    key: str,
    compute: Callable[[], Any],
    timeout: Any,
    *,
    cache: str = "default",
    lease: float = 30,
    client: Any = None,
) -> Any:
    """The async twin of :func:`get_or_set`: the cache's ``aget``/``aset``, ``redis.asyncio``
    for the claim and the wait. ``compute`` may be a plain or an async callable (a plain
    one runs in the event loop, as with Django's ``aget_or_set``)."""
    backend = _checked(key, compute, timeout, cache, lease, sync=False)
    value = await backend.aget(key, _MISSING)
    if value is not _MISSING:
        return value
    plan = _plan(backend, cache, key, timeout, lease, client)

    async def run_compute() -> Any:
        value = compute()
        if inspect.isawaitable(value):
            value = await value
        return value

    async def perform(op: claims.Op) -> Any:  # the cache and the caller's code
        kind = op[0]
        if kind == "get":
            return await plan.cache.aget(plan.key, _MISSING)
        if kind == "set":
            return await plan.cache.aset(plan.key, op[1], timeout=plan.timeout)
        if op[1] is None:  # ("compute", None): uncoordinated
            return await run_compute()
        held = claims.ahold(plan.claim, op[1], plan.lease_ms, plan.client)
        try:
            return await run_compute()
        finally:
            held.stop()

    client = connection.get_async_client(plan.client)
    return await engine_run.arun(_flow(plan, client), perform)
