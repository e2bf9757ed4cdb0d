"""Locks with owner tokens and fencing tokens, one Lua script per operation.

Keys of the lock called ``name`` (one hash tag, so one cluster slot):

* ``<prefix>:lock:{name}``: a hash ``{owner, token}`` (and ``w`` once a refused caller
  waits for a wake-up) with the lease as its TTL. It
  exists exactly while someone holds the lock, so a bounded ``SCAN`` for
  ``<prefix>:*lock:{*}`` finds every held lock, fair and read-write locks included (see
  :func:`scan_locks`);
* ``<prefix>:lock:{name}:fence``: the last fencing token, written by the script that
  grants the lock. A new token is the larger of that one plus one and the server's clock
  in microseconds, so the key may expire a second after the lease (nothing is left
  behind per name) and tokens still increase across acquisitions while the server's
  clock goes forward;
* ``<prefix>:lock:{name}:wake``: a list the release script pushes to when ``w`` is set,
  so blocked waiters (``BLPOP``) wake on release instead of polling.

What a lock shares with a semaphore (owner and fencing tokens, blocking, renewal) is
:class:`~atomicops.leases.lease.Lease`; this module says which scripts and keys a lock uses,
and lists held locks for the admin.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import re
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from redis.exceptions import RedisError

from atomicops.engine import connection, topology
from atomicops.engine.ops import Call, Flow, text
from atomicops.exceptions import ConfigurationError, InvalidInput, LockNotOwned, RedisUnavailable
from atomicops.leases.lease import WAKE_TTL_MS, Lease, LeaseOptions, NameLike, Wake, name_and_tag
from atomicops.primitives import keys

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
    # "lock" (a Lock, a reentrant Lock or a MultiLock's name), "fairlock" or "rwlock"
    kind: str = "lock"
    # Read leases of a read-write lock held by readers (owner and token are a writer's)
    readers: int = 0


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
    ``auto_renew`` (renew every ``ttl * renew_fraction`` seconds from the process.s background
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

    def __new__(cls, *args: Any, reentrant: bool = False, **options: Any) -> Lock:
        # Lock(..., reentrant=True) is the public spelling; the per-thread bookkeeping
        # lives in its own class so a plain Lock pays nothing for it. (*args: copy and
        # pickle call __new__ with no arguments.)
        if reentrant is True and cls is Lock:
            return super().__new__(ReentrantLock)
        return super().__new__(cls)

    def __init__(
        self,
        name: NameLike,
        ttl: float,
        *,
        reentrant: bool = False,
        owner: str | None = None,
        **options: Unpack[LeaseOptions],
    ) -> None:
        super().__init__(name, ttl, owner=owner, **options)
        if not isinstance(reentrant, bool):
            raise InvalidInput(f"reentrant must be True or False, got {reentrant!r}", key=self.key)
        if reentrant and owner is not None:
            # Reentrancy gives each thread (task) its own owner token: one fixed token
            # would make every thread's hold the same hold.
            raise InvalidInput("a reentrant lock takes no fixed owner token", key=self.key)
        self.reentrant = reentrant

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


class _Hold(Lock):
    """One thread's (or asyncio task's) hold of a :class:`ReentrantLock`: a lock whose
    nested acquires raise its count on the server (field ``n`` of the lock's hash, see
    lock_acquire.lua) instead of failing."""

    _nests = True

    def __init__(self, name: NameLike, ttl: float, **options: Unpack[LeaseOptions]) -> None:
        super().__init__(name, ttl, **options)
        self.depth = 0  # nested holds granted and not yet released

    def _acquire_op(self, owner: str, wait: Wake) -> Call[Any]:
        keys = [self.key, self._fence_key]
        # The depth after this acquire, not "+1": a retry after a lost reply counts once.
        depth = self.depth + 1 if self._owner is not None else 1
        return Call("lock_acquire", keys, [owner, self.ttl_ms, int(wait), depth])

    def _release_op(self, owner: str) -> Call[Any]:
        keys = [self.key, self._wake_key]
        return Call("lock_release", keys, [owner, WAKE_TTL_MS, max(self.depth - 1, 0)])

    def _acquire_flow(self, client: Any, blocking: bool, timeout: float | None) -> Flow[bool]:
        try:
            return (yield from super()._acquire_flow(client, blocking, timeout))
        except LockNotOwned:
            # A nested acquire found the hold gone: every level of it is gone.
            self._cancel_renewal()
            self._clear()
            self.depth = 0
            raise

    def _granted(self, owner: str, token: int, sent: float, lease_ms: float) -> None:
        self.depth = self.depth + 1 if self._owner == owner else 1
        super()._granted(owner, token, sent, lease_ms)

    def _release_flow(self, client: Any) -> Flow[None]:
        owner = self._owner
        if owner is None or self.depth <= 1:
            try:
                yield from super()._release_flow(client)
            except LockNotOwned:
                self.depth = 0
                raise
            self.depth = 0
            return
        op = self._release_op(owner)
        if not (yield from self._call(client, op)):
            self._mark_lost(owner, reported=True)
            self._cancel_renewal()
            self._clear()
            self.depth = 0
            raise self._not_owned("not held by this owner any more", script=op.script)
        self.depth -= 1

    def _start_thread_renewal(self) -> None:
        if self.depth == 1:  # the outer hold renews; nested ones change nothing
            super()._start_thread_renewal()

    def _start_task_renewal(self) -> None:
        if self.depth == 1:
            super()._start_task_renewal()


def _holder() -> Hashable:
    """Who holds a reentrant lock: the running asyncio task, else the thread."""
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no running event loop in this thread
        task = None
    return task if task is not None else threading.get_ident()


class ReentrantLock(Lock):
    """``Lock(name, ttl, reentrant=True)``: the holder may acquire again; released at 0.

    Reentrancy is per thread (per asyncio task for the async methods): each has its own
    owner token, and the count of its nested holds is kept on the server in the lock's
    hash (field ``n``), so a release by another owner (another thread, process, or a
    plain :class:`Lock` of the same name) never frees it; another thread blocks like any
    other owner, or gets :class:`LockNotAcquired`. Each nested acquire is one round trip
    that also resets the lease; each release lowers the count, the last one frees the
    lock and wakes a waiter. Attributes (:attr:`fencing_token`, :attr:`held`,
    :attr:`lost`) are those of the calling thread's (task's) hold.
    """

    def __init__(
        self,
        name: NameLike,
        ttl: float,
        *,
        reentrant: bool = True,
        **options: Unpack[LeaseOptions],
    ) -> None:
        self._holds: dict[Hashable, _Hold] = {}
        self._holds_lock = threading.Lock()
        super().__init__(name, ttl, reentrant=True, **options)
        self._name_like = name
        self._options = options

    def _mine(self, create: bool) -> _Hold | None:
        who = _holder()
        with self._holds_lock:
            hold = self._holds.get(who)
            if hold is None and create:
                hold = self._holds[who] = _Hold(self._name_like, self.ttl, **self._options)
            return hold

    def _forget(self, hold: _Hold) -> None:
        if hold.depth == 0 and hold._pending is None:
            with self._holds_lock:
                for who, known in list(self._holds.items()):
                    if known is hold:
                        del self._holds[who]

    def _mine_or_raise(self, what: str) -> _Hold:
        hold = self._mine(create=False)
        if hold is None:
            raise self._not_owned(f"{what} without a successful acquire() in this thread/task")
        return hold

    # What Lease.__init__ writes, and what a caller reads, is the calling holder's.
    @property
    def fencing_token(self) -> int | None:
        hold = self._mine(create=False)
        return None if hold is None else hold.fencing_token

    @fencing_token.setter
    def fencing_token(self, value: int | None) -> None:
        pass  # Lease.__init__ sets None: the holds keep their own

    @property
    def depth(self) -> int:
        """Nested holds of the calling thread (task): 0 when it does not hold the lock."""
        hold = self._mine(create=False)
        return 0 if hold is None else hold.depth

    @property
    def held(self) -> bool:
        hold = self._mine(create=False)
        return hold is not None and hold.held

    @property
    def lost(self) -> bool:
        hold = self._mine(create=False)
        return hold is not None and hold.lost

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        hold = self._mine(create=True)
        assert hold is not None
        try:
            return hold.acquire(blocking, timeout)
        finally:
            self._forget(hold)

    def release(self) -> None:
        hold = self._mine_or_raise("release()")
        try:
            hold.release()
        finally:
            self._forget(hold)

    def extend(self, ttl: float | None = None) -> None:
        self._mine_or_raise("extend()").extend(ttl)

    def owned(self) -> bool:
        hold = self._mine(create=False)
        return hold is not None and hold.owned()

    def ensure_owned(self) -> int:
        return self._mine_or_raise("ensure_owned()").ensure_owned()

    def __exit__(self, *exc_info: Any) -> None:
        hold = self._mine(create=False)
        if hold is None or hold._exit_quietly():
            if hold is not None:
                hold.depth = 0
                self._forget(hold)
            return
        self.release()

    async def aacquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        hold = self._mine(create=True)
        assert hold is not None
        try:
            return await hold.aacquire(blocking, timeout)
        finally:
            self._forget(hold)

    async def arelease(self) -> None:
        hold = self._mine_or_raise("arelease()")
        try:
            await hold.arelease()
        finally:
            self._forget(hold)

    async def aextend(self, ttl: float | None = None) -> None:
        await self._mine_or_raise("aextend()").aextend(ttl)

    async def aowned(self) -> bool:
        hold = self._mine(create=False)
        return hold is not None and await hold.aowned()

    async def aensure_owned(self) -> int:
        return await self._mine_or_raise("aensure_owned()").aensure_owned()

    async def __aexit__(self, *exc_info: Any) -> None:
        hold = self._mine(create=False)
        if hold is None or hold._exit_quietly():
            if hold is not None:
                hold.depth = 0
                self._forget(hold)
            return
        await self.arelease()

    def __repr__(self) -> str:
        return f"<ReentrantLock {self.name!r} depth={self.depth} token={self.fencing_token}>"


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
    # One SCAN finds every kind of lock: <prefix>:lock:{..}, :fairlock:{..}, :rwlock:{..}.
    return escaped + ":*lock:{*}"


# The key kinds a held lock's hash has (<prefix>:<kind>:{name}), listed by scan_locks.
LOCK_KINDS = ("lock", "fairlock", "rwlock")

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

    Not atomic, read-only: ``SCAN`` (``MATCH <prefix>:*lock:{*}``: locks, fair locks and
    read-write locks, ``COUNT`` 1000, never ``KEYS``), each page's keys read in one pipelined round trip of ``HMGET``/``PTTL``,
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
    head = len(keys.prefix()) + 1
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
        pipe.hmget(key, "owner", "token", "readers")
        pipe.pttl(key)
    replies = pipe.execute(raise_on_error=False)
    infos = {}
    for index, key in enumerate(batch):
        fields, pttl = replies[2 * index], replies[2 * index + 1]
        if isinstance(fields, Exception) or isinstance(pttl, Exception):
            continue  # not a hash: another program's key matched the pattern
        owner, token, readers = fields
        kind, brace, tag = key[head:].partition(":{")
        if pttl == -2 or not brace or kind not in LOCK_KINDS:
            continue  # released between SCAN and HMGET, or not an atomicops lock key
        try:
            fencing_token = None if token is None else int(token)
            reading = 0 if readers is None or kind != "rwlock" else int(readers)
        except ValueError:
            continue
        if owner is None and not reading:
            continue  # a hash that is not a held lock
        infos[key] = LockInfo(
            name=_unescape(tag[:-1]),
            key=key,
            owner=text(owner),
            fencing_token=fencing_token,
            ttl_ms=None if pttl < 0 else int(pttl),
            kind=kind,
            readers=reading,
        )
    return infos
