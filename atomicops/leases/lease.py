"""The lease that :class:`~atomicops.Lock` and :class:`~atomicops.Semaphore` share.

Owner tokens (a retry after a lost reply is the same acquisition), fencing tokens,
blocking on a wake-up list instead of polling, and auto-renewal
(:mod:`atomicops.leases.renewal`: on the process's background runner,
:mod:`atomicops.engine.background`, for sync code; a task per lease for async). Every operation is one flow (:mod:`atomicops.engine`),
run by the sync or the async runner; the scripts and keys come from the subclass.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import secrets
import socket
import time
import weakref
from collections.abc import Callable
from typing import Any, TypedDict, TypeVar

from atomicops.engine import background, connection, retry, topology
from atomicops.engine import run as engine_run
from atomicops.engine.ops import Call, Context, Flow, Send
from atomicops.exceptions import (
    AtomicOpsError,
    ConfigurationError,
    InvalidInput,
    LockError,
    LockNotAcquired,
    LockNotOwned,
    NotReplicated,
    RedisUnavailable,
)
from atomicops.leases import renewal
from atomicops.leases.renewal import Renewal
from atomicops.ops import observe
from atomicops.primitives import keys, validate
from atomicops.scripts.registry import registry, reply_error, retry_deadline_on

logger = logging.getLogger("atomicops")

L = TypeVar("L", bound="Lease")
T = TypeVar("T")
NameLike = str | tuple[Any, str]

# How long an unclaimed wake-up token stays: long enough to cover a waiter between a
# refused attempt and its BLPOP, short enough not to leave garbage around.
WAKE_TTL_MS = 10_000
# Longest single BLPOP when the client has no socket timeout; the loop re-checks then.
_MAX_WAIT = 30.0
DEFAULT_RENEW_FRACTION = 1 / 3
# Longest owner token a caller may fix (Lease(owner=...)): it is stored in the lease's hash.
MAX_OWNER = 1000


class LeaseOptions(TypedDict, total=False):
    """The keyword options of every lease (:class:`Lock`, :class:`Semaphore`, ``@locked``),
    named once; :class:`Lease` documents and checks them."""

    client: Any
    timeout: float | None
    auto_renew: bool
    renew_fraction: float
    max_renewals: int | None
    on_lost: Callable[[Any], Any] | None


_TAKEN = (
    "not held by this owner any more (its lease ran out or another owner took it); "
    "nothing was changed"
)


class Wake(enum.IntEnum):
    """What an acquire attempt tells the script about waking (ARGV ``wait`` of lock_acquire).

    The script names the same values (``NO``, ``BLOCKS``, ``WOKEN``).
    """

    NO = 0  # the caller gives up when refused: no wake-up wanted
    BLOCKS = 1  # a refused caller blocks on the wake-up list: the release must wake it
    WOKEN = 2  # the caller was just woken: others may still wait, pass the wake-up on


# -- validation and names (shared by Lock and Semaphore) ---------------------------


def name_and_tag(name: NameLike, kind: str) -> tuple[str, str]:
    """The name for messages, and the escaped text of the key's hash tag.

    A pair's pk and name are escaped with ``:`` too, so ``(user 1, "a:b")``, ``(user
    "1:a", "b")`` and the plain name ``"auth.user:1:a:b"`` are three locks (a plain name
    is escaped without ``:`` and so can never spell ``%3A``).
    """
    if isinstance(name, tuple) and len(name) == 2:
        instance, part = name
        meta = keys.saved_instance(instance, part, what=kind)
        tag = f"{meta.label_lower}:{keys.escape_part(instance.pk)}:{keys.escape_part(part)}"
        return f"{meta.label_lower}:{instance.pk}:{part}", tag
    if not isinstance(name, str):
        raise InvalidInput(f"a {kind} name is a string or an (instance, name) pair, got {name!r}")
    if not name:
        raise InvalidInput(f"{kind} name must not be empty")
    return name, keys.escape(name)


_host = socket.gethostname()


def new_owner() -> str:
    """A fresh owner token: ``host:pid:random``, readable in the admin, unique per acquire."""
    return f"{_host}:{os.getpid()}:{secrets.token_hex(8)}"


def _wait_cap(client: Any) -> float:
    """Longest BLPOP this client can wait without its own socket timeout firing."""
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {}) or {}
    socket_timeout = kwargs.get("socket_timeout")
    if not socket_timeout:
        return _MAX_WAIT
    return max(0.01, min(_MAX_WAIT, float(socket_timeout) * 0.8))


def wake_wait(client: Any, key: str, seconds: float) -> Flow[Any]:
    """Block on the wake-up list ``key`` for at most ``seconds`` (one BLPOP), as a flow.

    Returns the popped token, or None when the time ran out, or at once when the wait
    failed in a way that proves nothing ran and retries are on (the caller's next script
    call is then retried, or raises, by the planner's rules). The wait goes to the
    server owning the lock's slot, like the scripts; when that slot moves meanwhile, the
    wait goes on at its new owner for the time left.
    """
    route = topology.Route(client, [key], "BLPOP")
    yield from route.start()
    context = Context("BLPOP", key, write=False)
    until = time.monotonic() + seconds
    while True:
        # Redis reads BLPOP's timeout as decimal seconds; 0 would mean "forever".
        wait = max(0.001, min(until - time.monotonic(), _wait_cap(route.target)))
        try:
            replies = yield Send(
                route.target, [*route.prefix, ("BLPOP", key, f"{wait:.3f}")], context
            )
        except RedisUnavailable as exc:
            if (yield from route.unreachable(exc)):
                continue
            if _retried(exc):
                return None
            raise
        reply = replies[-1]
        if not isinstance(reply, Exception):
            return reply
        # A cluster unblocks a waiter whose slot moved away with MOVED: wait on the new
        # owner for the time left (a wake-up pushed meanwhile moved with the list).
        if (yield from route.redirected(reply)):
            if time.monotonic() >= until:
                return None
            continue
        # LOADING arrives as a ConnectionError, not a ResponseError
        error = reply_error(reply, script="BLPOP", keys=[key])
        if _retried(error):
            return None
        raise error


def _retried(error: Exception) -> bool:
    """Whether a wait that failed with ``error`` ends as if its time ran out, so that its
    caller's next call (a script, retried by the planner within its deadline and the
    caller's timeout) meets the failure instead: ``error`` proves nothing ran and retries
    are on. One retry path for every carrier, the planner's."""
    return retry.reason(error) is not None and retry_deadline_on()


# -- the lease: what Lock and Semaphore share ------------------------------------


class Lease:
    """A lease on a named resource: owner token, fencing token, blocking, renewal.

    The base of :class:`~atomicops.Lock` and :class:`~atomicops.Semaphore`. Subclasses
    say which scripts and keys to use (the ``_*_op`` methods); everything else, sync and
    async, is here, each operation written once as a flow.
    """

    kind = "lock"

    def __init__(
        self,
        name: NameLike,
        ttl: float,
        *,
        client: Any = None,
        timeout: float | None = None,
        auto_renew: bool = False,
        renew_fraction: float = DEFAULT_RENEW_FRACTION,
        max_renewals: int | None = None,
        on_lost: Callable[[Any], Any] | None = None,
        owner: str | None = None,
    ) -> None:
        self.name, tag = name_and_tag(name, self.kind)
        self.key = keys.tagged(self._key_kind, tag, escaped=True)
        self.ttl_ms = validate.lease_ms(ttl, self.key)
        self.ttl = self.ttl_ms / 1000
        self.timeout = validate.timeout(timeout, self.key)
        if not isinstance(auto_renew, bool):
            raise InvalidInput(
                f"auto_renew must be True or False, got {auto_renew!r}", key=self.key
            )
        if (
            isinstance(renew_fraction, bool)
            or not isinstance(renew_fraction, (int, float))
            or not 0 < renew_fraction < 1
        ):
            raise InvalidInput(
                f"renew_fraction must be a number between 0 and 1 (exclusive), got "
                f"{renew_fraction!r}",
                key=self.key,
            )
        if max_renewals is not None and (
            isinstance(max_renewals, bool) or not isinstance(max_renewals, int) or max_renewals < 0
        ):
            raise InvalidInput(
                f"max_renewals must be None or an int >= 0, got {max_renewals!r}", key=self.key
            )
        if on_lost is not None and not callable(on_lost):
            raise InvalidInput(f"on_lost must be callable, got {on_lost!r}", key=self.key)
        if client is not None and connection.is_pipeline(client):
            raise ConfigurationError(
                f"a {self.kind} needs a client, not a pipeline (it waits and renews)", key=self.key
            )
        if owner is not None and (not isinstance(owner, str) or not 0 < len(owner) <= MAX_OWNER):
            raise InvalidInput(
                f"owner must be None or a non-empty string of at most {MAX_OWNER} characters",
                key=self.key,
            )
        # A fixed owner token hands a held lease from one process to another (a Celery
        # task's claim, taken by the producer and adopted by the worker): an acquire by
        # the holder's own token gets the same grant and fencing token back.
        self.owner = owner
        self.client = client
        self.auto_renew = auto_renew
        self.renew_fraction = float(renew_fraction)
        self.max_renewals = max_renewals
        self.on_lost = on_lost
        self.fencing_token: int | None = None
        self.renewals = 0
        self._owner: str | None = None  # owner token while we hold it
        self._pending: str | None = None  # owner token of an acquire whose reply was lost
        # Took a wake-up token and has not yet passed the wake-up on (by a grant that
        # keeps the flag, or a refusal that sets it). Survives exceptions: a waiter
        # cancelled or cut off between its BLPOP and its next attempt would otherwise
        # drop the token, and the other waiters would sleep until their own timeouts.
        self._woken = False
        self._deadline: float | None = None  # monotonic time the lease surely still runs until
        self._granted_at: float | None = None  # monotonic time of the grant (hold-time metric)
        self._lost = False
        self._reported = False  # a LockNotOwned for this loss was already raised
        self._stop_renewal: Callable[[], object] | None = None

    _key_kind = "lock"

    def __repr__(self) -> str:
        state = "held" if self._owner else ("unknown" if self._pending else "not held")
        return f"<{type(self).__name__} {self.name!r} {state} token={self.fencing_token}>"

    # -- what subclasses provide ------------------------------------------------

    @property
    def _wake_key(self) -> str:
        return f"{self.key}:wake"

    def _acquire_op(self, owner: str, wait: Wake) -> Call[Any]:
        """The acquire script call; ``wait`` tells it whether a refusal should ask for a
        wake-up (see :class:`Wake` and the script's header)."""
        raise NotImplementedError

    def _release_op(self, owner: str) -> Call[Any]:
        raise NotImplementedError

    def _extend_op(self, owner: str, ttl_ms: int) -> Call[Any]:
        raise NotImplementedError

    def _check_op(self, owner: str) -> Call[Any]:
        raise NotImplementedError

    # A reentrant hold: an acquire while held is a nested hold (same owner token), not
    # an error, and a refused one means the hold is gone (see locks.ReentrantLock).
    _nests = False
    # Whether this lease reports its waits and holds to atomicops.ops.observe; a lease that
    # is one part of a larger one (a MultiLock's slot group) leaves that to the whole.
    _reports = True

    def _wake_key_of(self, refusal: Any) -> str:
        """The wake-up list to block on after ``refusal`` (an acquire script's reply)."""
        return self._wake_key

    def _read_tokens(self, tokens: Any) -> None:
        """A grant's reply beyond its first token (the acquire reply after ``granted``,
        the check reply after its four fields): a lease of several resources reads its
        tokens here."""

    def _gave_up_flow(self, client: Any, owner: str) -> Flow[None]:
        """A blocking acquire by ``owner`` ran out of time: undo what its refusals left
        on the server (a fair lock's place in line). Nothing for most leases."""
        return
        yield  # a flow, like every other operation

    def _waited(self, started: float, acquired: bool) -> None:
        if self._reports:
            observe.lease_waited(self.kind, self.name, started, acquired)

    # -- state ------------------------------------------------------------------

    @property
    def held(self) -> bool:
        """Whether this object believes it holds the lease (no round trip; see :meth:`owned`)."""
        return self._owner is not None and not self.lost

    @property
    def lost(self) -> bool:
        """True once the lease is known gone: a renewal or check found another owner, or
        the lease ran out by this process's clock (no round trip)."""
        if self._owner is None:
            return self._lost
        return self._lost or (self._deadline is not None and time.monotonic() >= self._deadline)

    def _not_owned(self, why: str, script: str | None = None) -> LockNotOwned:
        return LockNotOwned(
            f"{self.kind} {self.name!r} ({self.key}): {why}", key=self.key, script=script
        )

    def _not_acquired(self) -> LockNotAcquired:
        return LockNotAcquired(
            f"{self.kind} {self.name!r} ({self.key}) is held by another owner"
            + ("" if self.timeout is None else f"; waited {self.timeout:g}s"),
            key=self.key,
        )

    def _granted(self, owner: str, token: int, sent: float, lease_ms: float) -> None:
        self._owner = owner
        self._pending = None
        self.fencing_token = token
        self._deadline = sent + lease_ms / 1000
        self._granted_at = time.monotonic()
        self._lost = False
        self._reported = False
        self.renewals = 0

    def _clear(self) -> None:
        self._owner = None
        self._pending = None
        self._deadline = None
        self._granted_at = None

    def _mark_lost(self, owner: str, *, reported: bool) -> None:
        """Record that ``owner``'s lease is gone; tell ``on_lost`` once."""
        if self._owner != owner:
            return  # released or re-acquired meanwhile: not this acquisition's news
        first = not self._lost
        self._lost = True
        self._reported = self._reported or reported
        self._cancel_renewal()
        if first and self.on_lost is not None:
            try:
                self.on_lost(self)
            except Exception:  # a callback must not break the holder or the renewer
                logger.exception("atomicops: on_lost callback of %s raised", self.log_name)

    # -- flows: each operation's logic, shared by the sync and async methods --------

    def _acquire_flow(self, client: Any, blocking: bool, timeout: float | None) -> Flow[bool]:
        if not isinstance(blocking, bool):
            raise InvalidInput(f"blocking must be True or False, got {blocking!r}", key=self.key)
        if not blocking and timeout is not None:
            raise InvalidInput("a non-blocking acquire takes no timeout", key=self.key)
        wait_for = self.timeout if timeout is None else validate.timeout(timeout, self.key)
        if self._owner is not None and self.lost:
            if self._nests:
                # A nested acquire inside a hold that is gone: the outer code's belief is
                # what is wrong, and a fresh grant would hide that from it.
                self._mark_lost(self._owner, reported=True)
                raise self._not_owned("the outer hold's lease is lost; nothing was sent")
            self._cancel_renewal()
            self._clear()  # a lost lease is not held: taking it again is a new acquisition
        if self._owner is not None and not self._nests:
            raise LockError(
                f"{self.kind} {self.name!r} is already acquired by this object; release() it "
                "first (a Lock object is not re-entrant)",
                key=self.key,
            )
        # After a lost reply, try again with the same owner token: if the first attempt
        # took the lock, the script hands back that grant instead of refusing us. A
        # nested acquire of a reentrant hold goes with the holder's own token, and a
        # fixed owner (see Lock) with that one.
        owner = self._owner or self._pending or self.owner or new_owner()
        deadline = None if wait_for is None else time.monotonic() + wait_for
        # Whether a refusal should ask the holder's release to wake us (see lock_acquire.lua).
        will_wait = blocking and wait_for != 0
        started = time.monotonic()
        while True:
            sent = time.monotonic()
            self._pending = owner
            wait_mode = Wake.WOKEN if self._woken else (Wake.BLOCKS if will_wait else Wake.NO)
            try:
                # Sent again after a failure that proves it did not run, within the retry
                # deadline but never past the acquire's own timeout.
                reply = yield from self._call(client, self._acquire_op(owner, wait_mode), deadline)
            except NotReplicated as exc:
                reply = yield from self._unreplicated_grant(client, owner, exc)
            granted, value = reply[:2]
            self._woken = False  # a grant carried the flag on, or a refusal set it
            if granted:
                self._granted(owner, int(value), sent, self.ttl_ms)
                self._read_tokens(reply[1:])
                self._waited(started, True)
                return True
            if self._owner is not None:  # a nested acquire refused: the hold is gone
                self._mark_lost(owner, reported=True)
                self._clear()
                raise self._not_owned(_TAKEN, script=self._acquire_op(owner, Wake.NO).script)
            self._pending = None
            if not blocking:
                self._waited(started, False)
                return False
            now = time.monotonic()
            wait = _MAX_WAIT
            if value > 0:  # the holder's lease ends by then, release or not
                wait = min(wait, value / 1000 + 0.001)
            if deadline is not None:
                if now >= deadline:
                    yield from self._gave_up_flow(client, owner)
                    self._waited(started, False)
                    return False
                wait = min(wait, deadline - now)
            if (yield from wake_wait(client, self._wake_key_of(reply), wait)) is not None:
                self._woken = True  # a release's token, not a timeout

    def _unreplicated_grant(self, client: Any, owner: str, exc: NotReplicated) -> Flow[Any]:
        """WAIT_REPLICAS: a grant is only handed out once replicated as asked.

        A grant that too few replicas confirmed could vanish in a failover and be given to
        a second holder, so it is released (best effort: that release is not replicated
        either, and the lease runs out anyway) and :class:`NotReplicated` raised: the
        caller does not hold the lock. A refusal is a refusal (its only write is the
        wake-up flag), replicated or not.
        """
        if not exc.result or not exc.result[0]:
            return exc.result
        self._pending = None
        self._woken = False  # the release below passes any wake-up on
        try:
            yield from self._call(client, self._release_op(owner))
        except AtomicOpsError as release_error:
            logger.warning("atomicops: releasing the unreplicated grant of %s: %s", self.log_name,
                           type(release_error).__name__)  # fmt: skip
        raise NotReplicated(
            f"{self.kind} {self.name!r} ({self.key}) was granted on the primary (fencing token "
            f"{exc.result[1]}) but only {exc.acked} of {exc.required} replicas confirmed it, so "
            "a failover could hand it to another owner: it was released (best effort) and is "
            "NOT held",
            acked=exc.acked,
            required=exc.required,
            result=exc.result,
            key=self.key,
            script=exc.script,
        ) from exc

    def _release_flow(self, client: Any) -> Flow[None]:
        # A fixed owner may release a lease another object (another process) took with
        # it: how a lease handed on is given back.
        owner = self._owner or self._pending or self.owner
        if owner is None:
            raise self._not_owned("release() without a successful acquire() on this object")
        self._cancel_renewal()
        op = self._release_op(owner)
        try:
            released = yield from self._call(client, op)
        except NotReplicated:
            self._clear()  # released on the primary: this object holds nothing any more
            raise
        if self._reports:
            observe.lease_held(self.kind, self.name, self._granted_at)
        if not released:
            self._mark_lost(owner, reported=True)
        self._clear()
        if not released:
            raise self._not_owned(_TAKEN, script=op.script)

    def _extend_flow(self, client: Any, ttl: float | None) -> Flow[None]:
        ttl_ms = self.ttl_ms if ttl is None else validate.lease_ms(ttl, self.key)
        owner = self._owner
        if owner is None:
            raise self._not_owned("extend() without a successful acquire() on this object")
        if self._lost:
            self._reported = True
            raise self._not_owned("the lease was already lost; nothing was sent")
        sent = time.monotonic()
        op = self._extend_op(owner, ttl_ms)
        if not (yield from self._call(client, op)):
            self._mark_lost(owner, reported=True)
            raise self._not_owned(_TAKEN, script=op.script)
        if self._owner == owner:
            self._deadline = sent + ttl_ms / 1000

    def _renew_flow(self, client: Any, owner: str) -> Flow[Renewal]:
        """One auto-renewal: OK, LOST, or STOP (released meanwhile).

        An extend that reached the server after a release is no loss: release() stops
        the renewal before it sends, and a stopped renewal never reads its reply.
        """
        if self._owner != owner or self._lost:
            return Renewal.STOP
        sent = time.monotonic()
        extended = yield from self._call(client, self._extend_op(owner, self.ttl_ms))
        if self._owner != owner:
            return Renewal.STOP
        if not extended:
            self._mark_lost(owner, reported=False)
            return Renewal.LOST
        self._deadline = sent + self.ttl_ms / 1000
        self.renewals += 1
        return Renewal.OK

    def _owned_flow(self, client: Any) -> Flow[bool]:
        owner = self._owner or self._pending
        if owner is None:
            return False
        sent = time.monotonic()
        reply = yield from self._call(client, self._check_op(owner))
        owned, token, remaining_ms = reply[:3]
        if owned:
            if self._owner is None and self._pending == owner:
                # The acquire whose reply was lost did take it: adopt that grant.
                self._granted(owner, int(token), sent, max(int(remaining_ms), 0))
                self._read_tokens(reply[4:])
            return True
        if self._owner == owner:
            self._mark_lost(owner, reported=False)
        elif self._pending == owner:
            self._pending = None  # the lost acquire did not take it (or it has run out)
        return False

    def _ensure_flow(self, client: Any) -> Flow[int]:
        owner = self._owner
        if owner is None:
            raise self._not_owned("ensure_owned() without a successful acquire() on this object")
        if self.lost:
            self._mark_lost(owner, reported=True)
            raise self._not_owned(
                "the lease is lost (it ran out by this process's clock, or a "
                "renewal found another owner)"
            )
        op = self._check_op(owner)
        owned, token = (yield from self._call(client, op))[:2]
        if not owned or int(token) != self.fencing_token:
            self._mark_lost(owner, reported=True)
            raise self._not_owned("not held by this owner any more", script=op.script)
        return int(token)

    def _count_flow(self, client: Any) -> Flow[int]:
        reply = yield from self._call(client, self._check_op(""))
        return int(reply[3])

    # -- running flows ----------------------------------------------------------

    @staticmethod
    def _call(client: Any, call: Call[Any], limit: float | None = None) -> Flow[Any]:
        # Ops are built here from checked names and numbers: no re-check. ``limit``: see
        # Script.flow (an acquire is not sent again past its own timeout).
        return registry.get(call.script).flow(call.keys, call.args, client, limit)

    def _run(self, flow: Callable[..., Flow[T]], *args: Any) -> T:
        """Run ``flow(client, *args)`` on this lease's sync client."""
        client = connection.get_client(self.client)
        if connection.is_async(client):
            raise ConfigurationError(
                f"{self.kind} {self.name!r} has an asyncio client: use the a-prefixed methods "
                "and 'async with'",
                key=self.key,
            )
        return engine_run.run(flow(client, *args))

    async def _arun(self, flow: Callable[..., Flow[T]], *args: Any) -> T:
        """Run ``flow(client, *args)`` on this lease's asyncio client."""
        client = connection.get_async_client(self.client)
        if not connection.is_async(client):
            raise ConfigurationError(
                f"{self.kind} {self.name!r} has a synchronous client: the a-prefixed methods "
                "need a redis.asyncio one",
                key=self.key,
            )
        return await engine_run.arun(flow(client, *args))

    # -- public API: sync -------------------------------------------------------

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Take the lease; True when granted, False when not (non-blocking, or timed out).

        One round trip when free. When held elsewhere and ``blocking``, waits on the
        wake-up list (``BLPOP``, woken by the holder's release) and for at most the
        holder's remaining lease, then tries again: no polling. ``timeout`` (seconds;
        default: the object's ``timeout``, None = wait forever) bounds the whole wait.
        On success :attr:`fencing_token` holds the new token and auto-renewal starts if
        enabled.

        Raises :class:`OutcomeUnknown` when the reply to a grant attempt was lost: the
        lease may be held, runs out by its TTL, and calling :meth:`acquire` again (same
        owner token) or :meth:`owned` settles it. :class:`LockError` if this object
        already holds it; :class:`InvalidInput` for bad arguments.
        """
        granted = self._run(self._acquire_flow, blocking, timeout)
        if granted:
            self._start_thread_renewal()
        return granted

    def release(self) -> None:
        """Give the lease back and wake one waiter; one round trip, atomic.

        Raises :class:`LockNotOwned` if this owner no longer holds it (its lease ran out,
        another owner took it, or it was never acquired): nothing is changed then.
        :class:`OutcomeUnknown` if the reply was lost: it is released or runs out by its
        TTL, and :meth:`release` may be called again.
        """
        self._run(self._release_flow)

    def extend(self, ttl: float | None = None) -> None:
        """Reset the remaining lease to ``ttl`` seconds (default: the object's ``ttl``).

        One round trip, atomic: checks the owner and sets the TTL in one script. Raises
        :class:`LockNotOwned` (changing nothing) when this owner no longer holds it.
        """
        self._run(self._extend_flow, ttl)

    def owned(self) -> bool:
        """Whether this owner holds the lease now, asked of the server (one read-only trip).

        After an :class:`OutcomeUnknown` from :meth:`acquire` this settles the question,
        and adopts the grant (with its fencing token) if the lost attempt took it.
        """
        return self._run(self._owned_flow)

    def ensure_owned(self) -> int:
        """Raise :class:`LockNotOwned` unless this owner still holds the lease; return the
        fencing token. Call it right before a critical write (one read-only round trip).

        The lease can still run out right after this returns: pass the fencing token to
        the resource so it can refuse writes from an older holder.
        """
        return self._run(self._ensure_flow)

    def __enter__(self: L) -> L:
        if not self.acquire():
            raise self._not_acquired()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._exit_quietly():
            return
        self.release()

    def _exit_quietly(self) -> bool:
        """Leaving a ``with`` block: nothing to release, or the loss was already raised."""
        if self._owner is None and self._pending is None:
            return True  # released inside the block already
        if self._reported:
            # The block already got a LockNotOwned for this lease; a second one from
            # __exit__ would only bury it.
            self._cancel_renewal()
            self._clear()
            return True
        return False

    # -- public API: async ------------------------------------------------------

    async def aacquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """The async twin of :meth:`acquire` (same scripts, same rules)."""
        granted = await self._arun(self._acquire_flow, blocking, timeout)
        if granted:
            self._start_task_renewal()
        return granted

    async def arelease(self) -> None:
        """The async twin of :meth:`release`."""
        await self._arun(self._release_flow)

    async def aextend(self, ttl: float | None = None) -> None:
        """The async twin of :meth:`extend`."""
        await self._arun(self._extend_flow, ttl)

    async def aowned(self) -> bool:
        """The async twin of :meth:`owned`."""
        return await self._arun(self._owned_flow)

    async def aensure_owned(self) -> int:
        """The async twin of :meth:`ensure_owned`."""
        return await self._arun(self._ensure_flow)

    async def __aenter__(self: L) -> L:
        if not await self.aacquire():
            raise self._not_acquired()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        if self._exit_quietly():
            return
        await self.arelease()

    # -- auto-renewal -----------------------------------------------------------

    def _cancel_renewal(self) -> None:
        stop, self._stop_renewal = self._stop_renewal, None
        if stop is not None:
            stop()

    @property
    def log_name(self) -> str:
        """The lease as logs name it: its kind and a digest of its key, never the name a
        user chose (an email, a token) in clear."""
        return renewal.log_name(self.kind, self.key)

    def _renewal_plan(self) -> tuple[str, float] | None:
        if not self.auto_renew or self._owner is None:
            return None
        self._cancel_renewal()
        return self._owner, self.ttl * self.renew_fraction

    def _start_thread_renewal(self) -> None:
        plan = self._renewal_plan()
        if plan is None:
            return
        owner, interval = plan
        client = connection.get_client(self.client)
        flow = renewal.renewal_flow(weakref.ref(self), client, owner, interval, self.max_renewals)
        # On the process's background runner, not a thread per lease. The flow holds
        # only a weak reference: a lease dropped without release() stops being renewed,
        # and the finalizer stops the job now. Stopping calls the finalizer, which also
        # unregisters it: a Lock object acquired and released many times does not pile
        # up finalizers. release() stops the job before it sends: an extend refused
        # because the release got there first is never read as a loss.
        job = background.start(flow, f"renewal of {self.log_name}")
        self._stop_renewal = weakref.finalize(self, job.stop)

    def _start_task_renewal(self) -> None:
        plan = self._renewal_plan()
        if plan is None:
            return
        owner, interval = plan
        client = connection.get_async_client(self.client)
        flow = renewal.renewal_flow(weakref.ref(self), client, owner, interval, self.max_renewals)
        # release() cancels the task, so a reply read after it is never acted on.
        task = asyncio.get_running_loop().create_task(engine_run.arun(flow), name="atomicops-renew")
        self._stop_renewal = task.cancel

    # -- what a renewer uses (renewal.Renewable) ---------------------------------

    def renewal(self, client: Any, owner: str) -> Flow[Renewal]:
        """One renewal of ``owner``'s lease as a flow: an unreachable server is a retry,
        a loss only once the lease surely ran out."""
        try:
            return (yield from self._renew_flow(client, owner))
        except AtomicOpsError as exc:
            return self._renewal_failed(owner, exc)

    def time_left(self, owner: str) -> float | None:
        """Seconds until ``owner``'s lease runs out by this process's clock (None: not held)."""
        if self._owner != owner or self._deadline is None:
            return None
        return max(0.0, self._deadline - time.monotonic())

    def expire(self, owner: str) -> None:
        """``owner``'s lease ran out by this process's clock (renewals over): it is lost."""
        self._mark_lost(owner, reported=False)

    def _renewal_failed(self, owner: str, exc: AtomicOpsError) -> Renewal:
        """A renewal could not reach the server: lost only once the lease surely ran out."""
        if self._owner != owner:
            return Renewal.STOP
        if self._deadline is not None and time.monotonic() >= self._deadline:
            self._mark_lost(owner, reported=False)
            return Renewal.LOST
        logger.warning(
            "atomicops: renewing %s failed, will retry: %s", self.log_name, type(exc).__name__
        )
        return Renewal.RETRY
