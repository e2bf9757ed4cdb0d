"""Several locks taken as one: all or none, in any order, never deadlocking.

A :class:`MultiLock` over names ``a, b, ...`` holds exactly the locks a :class:`Lock`
of each name holds (the same ``<prefix>:lock:{name}`` hash, fence and wake-up list), so
it excludes, and is excluded by, plain locks of those names, and the dashboard's lock
listing shows each name it holds.

The names are grouped by cluster slot. One group is one script call: all of its names
or none (``multilock_acquire``). Groups are taken one after another in one global order
(by slot), each waiting (on the wake-up list, like :class:`Lock`) while holding only
groups that come before it in that order: two MultiLocks can never wait for each other
in a cycle, so no deadlock, whatever order their names were given in. A wait that holds
groups is cut into slices of a third of the lease, and the held groups are extended
between slices, so they cannot run out while their holder waits. When the caller's
timeout runs out, every group taken so far is released before ``acquire`` returns False.

Names that share a slot are one group: on a single server, as on a cluster, names only
share one by chance (each name is its own hash tag), so most MultiLocks are several
groups, one round trip each.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from atomicops import keys, observe, validate
from atomicops.engine import topology
from atomicops.engine.ops import Call, Flow
from atomicops.exceptions import (
    AtomicOpsError,
    InvalidInput,
    LockError,
    LockNotAcquired,
    LockNotOwned,
)
from atomicops.lease import WAKE_TTL_MS, Lease, LeaseOptions, NameLike, Wake, name_and_tag

if TYPE_CHECKING:
    # typing.Unpack is 3.11+; annotations are strings here, only the type checker reads it
    from typing_extensions import Unpack

T = TypeVar("T")
M = TypeVar("M", bound="MultiLock")


class SlotGroup(Lease):
    """The names of a :class:`MultiLock` that share one cluster slot: one lease, taken,
    extended and released by one script call. Not public: a part of a MultiLock."""

    kind = "lock"
    _key_kind = "lock"
    _reports = False  # the MultiLock reports one wait and one hold for all its groups

    def __init__(
        self, names: list[str], tags: list[str], ttl: float, **options: Unpack[LeaseOptions]
    ) -> None:
        super().__init__(names[0], ttl, **options)
        self.names = names
        self.lock_keys = [keys.tagged("lock", tag, escaped=True) for tag in tags]
        self.tokens: list[int] = []

    def _acquire_op(self, owner: str, wait: Wake) -> Call[Any]:
        pairs = [key for lock in self.lock_keys for key in (lock, f"{lock}:fence")]
        return Call("multilock_acquire", pairs, [owner, self.ttl_ms, int(wait)])

    def _release_op(self, owner: str) -> Call[Any]:
        pairs = [key for lock in self.lock_keys for key in (lock, f"{lock}:wake")]
        return Call("multilock_release", pairs, [owner, WAKE_TTL_MS])

    def _extend_op(self, owner: str, ttl_ms: int) -> Call[Any]:
        return Call("multilock_extend", list(self.lock_keys), [owner, ttl_ms])

    def _check_op(self, owner: str) -> Call[Any]:
        return Call("multilock_check", list(self.lock_keys), [owner])

    def _wake_key_of(self, refusal: Any) -> str:
        # Wait for the name that refused, not for the first one.
        return f"{self.lock_keys[int(refusal[2]) - 1]}:wake"

    def _read_tokens(self, tokens: Any) -> None:
        if tokens:
            self.tokens = [int(token) for token in tokens]

    @property
    def taken(self) -> bool:
        """Whether a release has something to give back (held, lost unreported, or an
        acquire whose reply was lost)."""
        return self._owner is not None or self._pending is not None


class MultiLock:
    """Several named locks held as one: all or none, in any order, without deadlock.

    ``MultiLock(names, ttl)``: ``names`` a list or tuple of lock names (strings or
    ``(instance, name)`` pairs, as for :class:`Lock`; duplicates count once), ``ttl`` the
    lease of each, in seconds. Takes :class:`Lock`'s keyword options (``client``,
    ``timeout``, ``auto_renew``, ``renew_fraction``, ``max_renewals``, ``on_lost``,
    called once with the MultiLock). ``with MultiLock([...], ttl=10) as m:`` raises
    :class:`LockNotAcquired` on enter when not every name could be had within
    ``timeout``; ``async with`` and the ``a``-prefixed methods are the async twins.

    While held, :attr:`fencing_tokens` maps each name (as :attr:`Lock.name` spells it:
    the string, or ``"app.model:pk:name"`` for a pair) to the ``int`` fencing token of
    that name's lock, from the same sequence as a :class:`Lock` of that name.

    Round trips: one per group of names sharing a cluster slot (see the module's
    docstring), plus, while waiting, the wake-up waits and an extend per held group every
    third of the lease.
    """

    kind = "multilock"

    def __init__(
        self, names: Sequence[NameLike], ttl: float, **options: Unpack[LeaseOptions]
    ) -> None:
        if isinstance(names, (str, bytes)) or not isinstance(names, (list, tuple)):
            raise InvalidInput(f"MultiLock names must be a list or tuple of names, got {names!r}")
        resolved: dict[str, str] = {}  # name -> escaped tag, in the caller's order
        for name in names:
            text, tag = name_and_tag(name, "lock")
            resolved.setdefault(text, tag)
        if not resolved:
            raise InvalidInput("MultiLock needs at least one name")
        on_lost = options.pop("on_lost", None)
        if on_lost is not None and not callable(on_lost):
            raise InvalidInput(f"on_lost must be callable, got {on_lost!r}")
        self.on_lost = on_lost
        by_slot: dict[int, list[tuple[str, str]]] = {}
        for text, tag in resolved.items():
            slot = topology.slot_of([keys.tagged("lock", tag, escaped=True)], "multilock")
            by_slot.setdefault(slot or 0, []).append((text, tag))
        group_options: dict[str, Any] = {**options, "on_lost": self._group_lost}
        # The one global order every MultiLock takes its groups in: by slot.
        self._groups = [
            SlotGroup(
                [text for text, _ in members],
                [tag for _, tag in members],
                ttl,
                **group_options,
            )
            for _, members in sorted(by_slot.items())
        ]
        first = self._groups[0]
        self.names = list(resolved)
        self.ttl = first.ttl
        self.timeout = first.timeout
        self.key = first.key  # named in errors, with every name
        self._granted_at: float | None = None
        self._lost_reported = False

    def __repr__(self) -> str:
        state = "held" if self.held else "not held"
        return f"<MultiLock {self.names!r} {state}>"

    # -- state ------------------------------------------------------------------

    @property
    def fencing_tokens(self) -> dict[str, int]:
        """Name -> fencing token (``int``) of each name while held; empty when not held."""
        if not self.held:
            return {}
        return {
            name: token
            for group in self._groups
            for name, token in zip(group.names, group.tokens, strict=True)
        }

    @property
    def held(self) -> bool:
        """Whether this object believes it holds every name (no round trip)."""
        return all(group.held for group in self._groups)

    @property
    def lost(self) -> bool:
        """True once some name's lease is known gone (no round trip)."""
        return any(group.lost for group in self._groups)

    def _group_lost(self, group: SlotGroup) -> None:
        if self._lost_reported:
            return
        self._lost_reported = True
        if self.on_lost is not None:
            self.on_lost(self)

    def _describe(self) -> str:
        return (
            f"multilock {self.names!r} ({', '.join(k for g in self._groups for k in g.lock_keys)})"
        )

    def _not_acquired(self) -> LockNotAcquired:
        return LockNotAcquired(
            f"{self._describe()}: not every name could be had"
            + ("" if self.timeout is None else f"; waited {self.timeout:g}s"),
            key=self.key,
        )

    # -- flows ------------------------------------------------------------------

    def _acquire_flow(self, client: Any, blocking: bool, timeout: float | None) -> Flow[bool]:
        if not isinstance(blocking, bool):
            raise InvalidInput(f"blocking must be True or False, got {blocking!r}", key=self.key)
        if not blocking and timeout is not None:
            raise InvalidInput("a non-blocking acquire takes no timeout", key=self.key)
        wait_for = self.timeout if timeout is None else validate.timeout(timeout, self.key)
        if any(group.held for group in self._groups):
            raise LockError(
                f"{self._describe()} is already acquired by this object; release() it first",
                key=self.key,
            )
        started = time.monotonic()
        deadline = None if wait_for is None else started + wait_for
        taken: list[SlotGroup] = []
        try:
            for group in self._groups:
                if not (yield from self._take(client, group, taken, blocking, deadline)):
                    yield from self._give_back(client, taken)
                    observe.lease_waited(self.kind, self.names[0], started, False)
                    return False
                taken.append(group)
        except AtomicOpsError:
            # A lost reply, a dead server, a lease lost while waiting: what was taken is
            # given back, best effort; a group whose reply was lost runs out by its
            # lease. (A cancellation closes the flow, which can send nothing more: what
            # was taken then runs out by its lease too.)
            yield from self._give_back(client, taken)
            raise
        self._granted_at = time.monotonic()
        self._lost_reported = False
        observe.lease_waited(self.kind, self.names[0], started, True)
        return True

    def _take(
        self,
        client: Any,
        group: SlotGroup,
        held: list[SlotGroup],
        blocking: bool,
        deadline: float | None,
    ) -> Flow[bool]:
        """Take ``group``, waiting (if ``blocking``) until ``deadline`` while holding ``held``."""
        if not blocking:
            return (yield from group._acquire_flow(client, False, None))
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not held:
                return (yield from group._acquire_flow(client, True, left))
            # Holding earlier groups: wait a slice, keep them alive, wait again.
            piece = group.ttl / 3 if left is None else min(left, group.ttl / 3)
            if (yield from group._acquire_flow(client, True, piece)):
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            for earlier in held:
                yield from earlier._extend_flow(client, None)

    def _give_back(self, client: Any, taken: list[SlotGroup]) -> Flow[None]:
        for group in taken:
            try:
                yield from group._release_flow(client)
            except AtomicOpsError:
                pass  # not ours any more, or unreachable: its lease runs out
        taken.clear()

    def _release_flow(self, client: Any) -> Flow[None]:
        mine = [group for group in self._groups if group.taken]
        if not mine:
            raise LockNotOwned(
                f"{self._describe()}: release() without a successful acquire() on this object",
                key=self.key,
            )
        observe.lease_held(self.kind, self.names[0], self._granted_at)
        self._granted_at = None
        failed: LockNotOwned | None = None
        for group in mine:
            try:
                yield from group._release_flow(client)
            except LockNotOwned as exc:
                failed = failed or exc
        if failed is not None:
            raise LockNotOwned(
                f"{self._describe()}: some name was not held by this owner any more (its "
                "lease ran out or another owner took it); the others were released",
                key=failed.key,
                script=failed.script,
            ) from failed

    def _each_flow(self, client: Any, step: Callable[[SlotGroup], Flow[T]]) -> Flow[list[T]]:
        results = []
        for group in self._groups:
            results.append((yield from step(group)))
        return results

    def _extend_flow(self, client: Any, ttl: float | None) -> Flow[None]:
        yield from self._each_flow(client, lambda group: group._extend_flow(client, ttl))

    def _owned_flow(self, client: Any) -> Flow[bool]:
        return all((yield from self._each_flow(client, lambda group: group._owned_flow(client))))

    def _ensure_flow(self, client: Any) -> Flow[dict[str, int]]:
        yield from self._each_flow(client, lambda group: group._ensure_flow(client))
        return self.fencing_tokens

    def _run(self, flow: Callable[..., Flow[T]], *args: Any) -> T:
        return self._groups[0]._run(flow, *args)

    async def _arun(self, flow: Callable[..., Flow[T]], *args: Any) -> T:
        return await self._groups[0]._arun(flow, *args)

    # -- public API -------------------------------------------------------------

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Take every name; True when all were granted, False (holding none) otherwise.

        ``blocking``/``timeout`` as for :meth:`Lock.acquire`. Raises what Lock's does
        (:class:`OutcomeUnknown` when a reply was lost: what was taken is given back,
        best effort, and the group whose reply was lost runs out by its lease), and
        :class:`LockNotOwned` when a name taken earlier was lost while waiting for a
        later one (the rest given back).
        """
        granted = self._run(self._acquire_flow, blocking, timeout)
        if granted:
            for group in self._groups:
                group._start_thread_renewal()
        return granted

    def release(self) -> None:
        """Release every name; one round trip per slot group. Raises :class:`LockNotOwned`
        (after releasing the others) when some name was no longer held."""
        self._run(self._release_flow)

    def extend(self, ttl: float | None = None) -> None:
        """Reset every name's lease; :class:`LockNotOwned` when some name is lost."""
        self._run(self._extend_flow, ttl)

    def owned(self) -> bool:
        """Whether this owner holds every name now, asked of the server."""
        return self._run(self._owned_flow)

    def ensure_owned(self) -> dict[str, int]:
        """Raise :class:`LockNotOwned` unless every name is still held; return
        :attr:`fencing_tokens`."""
        return self._run(self._ensure_flow)

    def __enter__(self: M) -> M:
        if not self.acquire():
            raise self._not_acquired()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._exit_quietly():
            return
        self.release()

    def _exit_quietly(self) -> bool:
        quiet = [group._exit_quietly() for group in self._groups]
        return all(quiet)

    async def aacquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """The async twin of :meth:`acquire`."""
        granted = await self._arun(self._acquire_flow, blocking, timeout)
        if granted:
            for group in self._groups:
                group._start_task_renewal()
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

    async def aensure_owned(self) -> dict[str, int]:
        """The async twin of :meth:`ensure_owned`."""
        return await self._arun(self._ensure_flow)

    async def __aenter__(self: M) -> M:
        if not await self.aacquire():
            raise self._not_acquired()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        if self._exit_quietly():
            return
        await self.arelease()
