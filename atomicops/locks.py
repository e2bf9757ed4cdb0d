"""Locks with owner tokens and fencing tokens, one Lua script per operation.

Keys of the lock called ``name`` (one hash tag, so one cluster slot):

* ``<prefix>:lock:{name}``: a hash ``{owner, token}`` (and ``w`` once a refused caller
  waits for a wake-up) with the lease as its TTL. It
  exists exactly while someone holds the lock, so a bounded ``SCAN`` for
  ``<prefix>:lock:{*}`` finds every held lock (see :func:`scan_locks`);
* ``<prefix>:lock:{name}:fence``: the last fencing token, written by the script that
  grants the lock. A new token is the larger of that one plus one and the server's clock
  in microseconds, so the key may expire a second after the lease (nothing is left
  behind per name) and tokens still increase across acquisitions while the server's
  clock goes forward;
* ``<prefix>:lock:{name}:wake``: a list the release script pushes to when ``w`` is set,
  so blocked waiters (``BLPOP``) wake on release instead of polling.

What a lock shares with a semaphore (owner and fencing tokens, blocking, renewal) is
:class:`~atomicops.lease.Lease`; this module says which scripts and keys a lock uses,
and lists held locks for the admin.
"""

from __future__ import annotations

import functools
import inspect
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from redis.exceptions import RedisError

from atomicops import connection, keys
from atomicops.engine import topology
from atomicops.engine.ops import Call, Flow, text
from atomicops.exceptions import ConfigurationError, InvalidInput, RedisUnavailable
from atomicops.lease import WAKE_TTL_MS, Lease, LeaseOptions, NameLike, Wake, name_and_tag

if TYPE_CHECKING:
    # typing.Unpack is 3.11+; annotations are strings here, only the type checker reads it
    from typing_extensions import Unpack

F = TypeVar("F", bound=Callable[..., Any])

# Keys returned per SCAN call by list_locks: large enough that a few calls cover a
# typical keyspace, small enough that one call never blocks the server noticeably.
_SCAN_COUNT = 1000
_UNESCAPE = re.compile(r"%([0-9A-F]{2})")
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


@dataclass(frozen=True)
class LockInfo:
    """One held lock, as :func:`list_locks` read it (a snapshot, not a handle)."""

    name: str
    key: str
    owner: str | None
    fencing_token: int | None
    ttl_ms: int | None


# -- the lock ---------------------------------------------------------------------


class Lock(Lease):
    """A distributed mutex with owner tokens, fencing tokens and wake-on-release.

    ``Lock(name, ttl)``: ``name`` is a string or an ``(instance, name)`` pair, ``ttl``
    the lease in seconds (float allowed). Use it as ``with Lock("report", ttl=10) as
    lock:`` (raises :class:`LockNotAcquired` on enter when it cannot be had within
    ``timeout``), or call :meth:`acquire` / :meth:`release` / :meth:`extend`; ``async
    with`` and the ``a``-prefixed methods are the async twins, over the same scripts.

    Keyword arguments: ``client`` (a redis-py client; async methods need an asyncio
    one), ``timeout`` (seconds a blocking acquire waits by default; None = forever),
    ``auto_renew`` (renew every ``ttl * renew_fraction`` seconds from a background
    thread, or an asyncio task after :meth:`aacquire`, holding only a weak reference),
    ``max_renewals`` (cap; afterwards the lease runs out), ``on_lost`` (called with the
    lock, once, when the lease is found lost), ``owner`` (a fixed owner token for every
    acquire of this object, instead of a fresh one each time: an acquire with the
    holder's own token gets the same grant and fencing token back, lease reset, which
    hands a held lock from one process to another, and :meth:`release` gives back the
    lease that owner holds even if another object took it; :meth:`holder` reads it). One
    object holds the lock at most once at a time (not re-entrant); share the name, not
    the object, between holders.
    """

    kind = "lock"
    _key_kind = "lock"

    @property
    def _fence_key(self) -> str:
        return f"{self.key}:fence"

    def _acquire_op(self, owner: str, wait: Wake) -> Call[Any]:
        keys = [self.key, self._fence_key]
        return Call("lock_acquire", keys, [owner, self.ttl_ms, int(wait)])

    def _release_op(self, owner: str) -> Call[Any]:
        return Call("lock_release", [self.key, self._wake_key], [owner, WAKE_TTL_MS])

    def _extend_op(self, owner: str, ttl_ms: int) -> Call[Any]:
        return Call("lock_extend", [self.key], [owner, ttl_ms])

    def _check_op(self, owner: str) -> Call[Any]:
        return Call("lock_check", [self.key], [owner])

    def locked(self) -> bool:
        """Whether anyone holds the lock now (one read-only round trip)."""
        return self._run(self._count_flow) > 0

    async def alocked(self) -> bool:
        """The async twin of :meth:`locked`."""
        return await self._arun(self._count_flow) > 0

    def _holder_flow(self, client: Any) -> Flow[LockInfo | None]:
        owned, token, pttl, holders, *owner = yield from self._call(client, self._check_op(""))
        if not holders:
            return None
        return LockInfo(
            name=self.name,
            key=self.key,
            owner=text(owner[0]) if owner else None,
            fencing_token=int(token),
            ttl_ms=None if pttl < 0 else int(pttl),
        )

    def holder(self) -> LockInfo | None:
        """Who holds the lock now (owner token, fencing token, lease left), or None when
        free: one read-only round trip, a snapshot (the holder may change right after).

        With a fixed ``owner`` (see :class:`Lock`) the owner token says who that is: a
        refused caller can find the holder it defers to (``atomicops.celery`` returns the
        queued task's id this way).
        """
        return self._run(self._holder_flow)

    async def aholder(self) -> LockInfo | None:
        """The async twin of :meth:`holder`."""
        return await self._arun(self._holder_flow)

    if TYPE_CHECKING:  # inside ``with``, the lock is held: its token is an int

        def __enter__(self) -> HeldLock: ...

        async def __aenter__(self) -> HeldLock: ...


if TYPE_CHECKING:

    class HeldLock(Lock):
        """A :class:`Lock` inside its ``with`` block (for type checkers only)."""

        fencing_token: int


def locked(
    name: NameLike | Callable[..., NameLike], ttl: float, **options: Unpack[LeaseOptions]
) -> Callable[[F], F]:
    """Run the decorated function (sync or async) while holding the lock ``name``.

    ``name`` may be a callable taking the function's arguments and returning the name
    (e.g. ``lambda order: (order, "ship")``). Each call takes a fresh :class:`Lock` with
    the other arguments (:class:`Lock`'s options), waits up to ``timeout``, and raises
    :class:`LockNotAcquired` when it cannot get it, :class:`LockNotOwned` after the call
    if the lease was lost.
    """
    # Bad options (and a bad fixed name) fail at decoration time, not at the first call.
    Lock("atomicops-options-check" if callable(name) else name, ttl, **options)

    def lock_for(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Lock:
        return Lock(name(*args, **kwargs) if callable(name) else name, ttl, **options)

    def decorate(func: F) -> F:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                async with lock_for(args, kwargs):
                    return await func(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with lock_for(args, kwargs):
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


# -- listing (for the admin dashboard) ----------------------------------------------


def lock_key(name: NameLike) -> str:
    """The key of the lock called ``name``: ``<prefix>:lock:{name}``."""
    return keys.tagged("lock", name_and_tag(name, "lock")[1], escaped=True)


def _unescape(text: str) -> str:
    return _UNESCAPE.sub(lambda m: chr(int(m[1], 16)), text)


def _lock_pattern() -> str:
    # The prefix is user configuration: glob characters in it must match literally.
    # Braces are literal in Redis globs; lock names are escaped, so a held lock's key
    # is the only atomicops key under ":lock:" that ends with "}".
    escaped = _GLOB_SPECIAL.sub(r"\\\1", keys.prefix())
    return escaped + ":lock:{*}"


# Bounds of scan_locks() (the admin dashboard's lock list): the work one call may cause.
SCAN_LOCKS_MAX_CALLS = 100  # SCAN ... COUNT 1000 calls: about 100,000 keys examined
SCAN_LOCKS_MAX_KEYS = 2000  # matching keys read, one HMGET + one PTTL each
SCAN_LOCKS_MAX_SECONDS = 1.0


@dataclass(frozen=True)
class LockScanStop:
    """Why :func:`scan_locks` stopped before the end of the keyspace (the ``STOPPED_*``
    constants); ``reason`` is the sentence a page shows."""

    code: str
    reason: str


STOPPED_AT_LIMIT = LockScanStop("limit", "the limit of locks to list was reached")
STOPPED_BY_SCAN_CALLS = LockScanStop("scan_calls", "the bound on SCAN calls was reached")
STOPPED_BY_KEYS = LockScanStop("keys", "the bound on matching keys read was reached")
STOPPED_BY_TIME = LockScanStop("time", "the time bound was reached")


@dataclass(frozen=True)
class LockScan:
    """What :func:`scan_locks` found, and the work it took."""

    locks: tuple[LockInfo, ...]  # sorted by name
    stopped_by: LockScanStop | None  # None: the whole keyspace was scanned
    scan_calls: int
    keys_read: int  # keys that matched the pattern and were read (HMGET + PTTL)
    elapsed_ms: int

    @property
    def cut(self) -> bool:
        """Whether more locks may be held than :attr:`locks` lists."""
        return self.stopped_by is not None


def list_locks(*, client: Any = None, limit: int = 200) -> list[LockInfo]:
    """Held locks (at most ``limit``), sorted by name: for tools.

    Not atomic, read-only: ``SCAN`` (``MATCH <prefix>:lock:{*}``, ``COUNT`` 1000, never
    ``KEYS``), each page's keys read in one pipelined round trip of ``HMGET``/``PTTL``,
    until ``limit`` locks are found or the keyspace ends, however long that takes: a
    page that must answer quickly calls :func:`scan_locks`, which bounds the work. A lock
    released in between is left out, and so is a foreign key that matches the pattern
    but is not a lock hash. Raises :class:`InvalidInput` for a bad ``limit`` and
    :class:`RedisUnavailable` when the server cannot be read.
    """
    scan = _scan_locks("list_locks()", client, limit, None, None, None)
    return list(scan.locks)


def scan_locks(
    *,
    client: Any = None,
    limit: int = 200,
    max_scan_calls: int | None = SCAN_LOCKS_MAX_CALLS,
    max_keys: int | None = SCAN_LOCKS_MAX_KEYS,
    max_seconds: float | None = SCAN_LOCKS_MAX_SECONDS,
) -> LockScan:
    """Held locks like :func:`list_locks`, with the work bounded and reported: for dashboards.

    Stops at whichever comes first: ``limit`` locks found, ``max_scan_calls`` SCAN calls,
    ``max_keys`` matching keys read, ``max_seconds`` (checked before each round trip);
    ``None`` lifts a bound. So one call sends at most ``max_scan_calls + 2 * max_keys``
    commands and takes about ``max_seconds`` plus one round trip. :attr:`LockScan.cut`
    says whether it stopped early and :attr:`LockScan.stopped_by` why. On a cluster client
    the primaries are scanned one after another, within the same bounds. Raises
    :class:`InvalidInput` for a bad argument and :class:`RedisUnavailable` when the
    server cannot be read.
    """
    return _scan_locks("scan_locks()", client, limit, max_scan_calls, max_keys, max_seconds)


def _bound(what: str, name: str, value: Any, kinds: tuple[type, ...]) -> None:
    if value is None:
        return
    number = not isinstance(value, bool) and isinstance(value, kinds)
    if number and value == value and value > 0:  # value == value rules out NaN
        return
    raise InvalidInput(f"{what}: {name} must be a number > 0 or None, got {value!r}")


def _scan_locks(
    what: str,
    client: Any,
    limit: int,
    max_calls: int | None,
    max_keys: int | None,
    max_seconds: float | None,
) -> LockScan:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidInput(f"{what}: limit must be an int >= 1, got {limit!r}")
    _bound(what, "max_scan_calls", max_calls, (int,))
    _bound(what, "max_keys", max_keys, (int,))
    _bound(what, "max_seconds", max_seconds, (int, float))
    client = connection.get_client(client)
    if connection.is_pipeline(client) or connection.is_async(client):
        raise ConfigurationError(f"{what} needs a synchronous client, not a pipeline")
    started = time.monotonic()
    deadline = None if max_seconds is None else started + max_seconds
    targets = [target for _, target in topology.primaries(client)]
    pattern = _lock_pattern()
    head = len(f"{keys.prefix()}:lock:")
    found: dict[str, LockInfo] = {}  # by key: SCAN may return a key twice
    calls = read = 0
    stop: LockScanStop | None = None
    exhausted = False  # every target scanned to its end
    try:
        for index, target in enumerate(targets):
            cursor = None
            while cursor != 0 and stop is None and len(found) < limit:
                if max_calls is not None and calls >= max_calls:
                    stop = STOPPED_BY_SCAN_CALLS
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    stop = STOPPED_BY_TIME
                    break
                cursor, page = target.scan(cursor or 0, match=pattern, count=_SCAN_COUNT)
                calls += 1
                batch = [key for key in dict.fromkeys(map(_key_text, page)) if key not in found]
                if max_keys is not None and read + len(batch) > max_keys:
                    batch, stop = batch[: max_keys - read], STOPPED_BY_KEYS
                if batch:
                    if deadline is not None and time.monotonic() >= deadline:
                        stop = STOPPED_BY_TIME
                        break
                    found.update(_read_locks(target, batch, head))
                    read += len(batch)
            if stop is not None or len(found) >= limit:
                exhausted = stop is None and cursor == 0 and index == len(targets) - 1
                break
        else:
            exhausted = True
    except RedisError as exc:
        raise RedisUnavailable(f"{what}: cannot read locks: {exc}") from exc
    if stop is None and (not exhausted or len(found) > limit):
        stop = STOPPED_AT_LIMIT
    return LockScan(
        locks=tuple(sorted(found.values(), key=lambda info: info.name)[:limit]),
        stopped_by=stop,
        scan_calls=calls,
        keys_read=read,
        elapsed_ms=round((time.monotonic() - started) * 1000),
    )


def _key_text(raw: bytes | str) -> str:
    return text(raw) or ""


def _read_locks(client: Any, batch: list[str], head: int) -> dict[str, LockInfo]:
    """Owner, token and TTL of each key in ``batch``: one pipelined round trip."""
    pipe = client.pipeline(transaction=False)
    for key in batch:
        pipe.hmget(key, "owner", "token")
        pipe.pttl(key)
    replies = pipe.execute(raise_on_error=False)
    infos = {}
    for index, key in enumerate(batch):
        fields, pttl = replies[2 * index], replies[2 * index + 1]
        if isinstance(fields, Exception) or isinstance(pttl, Exception):
            continue  # not a hash: another program's key matched the pattern
        owner, token = fields
        if pttl == -2 or owner is None:
            continue  # released between SCAN and HMGET, or a hash that is not a lock
        try:
            fencing_token = None if token is None else int(token)
        except ValueError:
            continue
        infos[key] = LockInfo(
            name=_unescape(key[head + 1 : -1]),
            key=key,
            owner=text(owner),
            fencing_token=fencing_token,
            ttl_ms=None if pttl < 0 else int(pttl),
        )
    return infos
