"""A read-write lock: readers share, a writer excludes everyone, writers are not starved.

Keys of the read-write lock called ``name`` (one hash tag, so one cluster slot):

* ``<prefix>:rwlock:{name}``: a hash ``{owner, token, w}`` of the writer while one holds
  it (its TTL is the write lease), and ``readers``, how many read leases ran at the last
  reader's grant or release; it exists while anyone holds the lock, so the dashboard's
  lock listing finds it;
* ``...:readers`` (sorted set owner -> lease end) and ``...:tokens`` (owner -> fencing
  token): the read leases, kept like a :class:`~atomicops.Semaphore`'s holders (and
  extended and checked by the semaphore's scripts);
* ``...:writers``: waiting writers, owner -> when the wish lapses. A live entry refuses
  new readers, so a stream of readers cannot starve a writer. A waiting writer renews
  its wish at every attempt, at least every half of its ``ttl``; a writer that gives up
  drops it at once, and one that died stops keeping readers out within ``ttl``;
* ``...:fence``: one fence for both kinds, so a write token is larger than every token
  handed out before it (reads included);
* ``...:rwake`` / ``...:wwake``: wake-up lists of blocked readers and writers. The last
  reader out wakes a writer; a writer's release wakes the next writer and every reader
  that asked (``...:asked`` counts them).

:meth:`ReadWriteLock.read` and :meth:`ReadWriteLock.write` hand out leases with
:class:`~atomicops.Lock`'s interface (``with``, ``async with``, ``acquire``,
``release``, ``extend``, ``ensure_owned``, renewal), each with its fencing token.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, TypeVar

from atomicops.engine.ops import Call, Flow
from atomicops.exceptions import AtomicOpsError
from atomicops.lease import WAKE_TTL_MS, Lease, LeaseOptions, NameLike, Wake, name_and_tag

if TYPE_CHECKING:
    # typing.Unpack is 3.11+; annotations are strings here, only the type checker reads it
    from typing_extensions import Unpack

L = TypeVar("L", bound=Lease)
logger = logging.getLogger("atomicops")


class ReadLease(Lease):
    """One read lease of a :class:`ReadWriteLock` (many may run at once)."""

    kind = "rwlock_read"
    _key_kind = "rwlock"

    @property
    def _wake_key(self) -> str:
        return f"{self.key}:rwake"

    def _acquire_op(self, owner: str, wait: Wake) -> Call[Any]:
        k = self.key
        keys = [k, f"{k}:readers", f"{k}:tokens", f"{k}:writers", f"{k}:fence", f"{k}:asked"]
        return Call("rwlock_read_acquire", keys, [owner, self.ttl_ms, int(wait)])

    def _release_op(self, owner: str) -> Call[Any]:
        k = self.key
        keys = [k, f"{k}:readers", f"{k}:tokens", f"{k}:writers", f"{k}:wwake"]
        return Call("rwlock_read_release", keys, [owner, WAKE_TTL_MS])

    def _extend_op(self, owner: str, ttl_ms: int) -> Call[Any]:
        return Call("semaphore_extend", [f"{self.key}:readers", f"{self.key}:tokens"],
                    [owner, ttl_ms])  # fmt: skip

    def _check_op(self, owner: str) -> Call[Any]:
        return Call("semaphore_check", [f"{self.key}:readers", f"{self.key}:tokens"], [owner])

    if TYPE_CHECKING:  # inside ``with``, the lease is held: its token is an int

        def __enter__(self) -> HeldRead: ...

        async def __aenter__(self) -> HeldRead: ...


class WriteLease(Lease):
    """The write lease of a :class:`ReadWriteLock` (no reader and no other writer)."""

    kind = "rwlock_write"
    _key_kind = "rwlock"

    @property
    def _wake_key(self) -> str:
        return f"{self.key}:wwake"

    def _acquire_op(self, owner: str, wait: Wake) -> Call[Any]:
        k = self.key
        keys = [k, f"{k}:readers", f"{k}:writers", f"{k}:fence"]
        return Call("rwlock_write_acquire", keys, [owner, self.ttl_ms, int(wait)])

    def _release_op(self, owner: str) -> Call[Any]:
        k = self.key
        keys = [k, f"{k}:writers", f"{k}:asked", f"{k}:rwake", f"{k}:wwake"]
        return Call("rwlock_write_release", keys, [owner, WAKE_TTL_MS])

    def _extend_op(self, owner: str, ttl_ms: int) -> Call[Any]:
        return Call("lock_extend", [self.key], [owner, ttl_ms])

    def _gave_up_flow(self, client: Any, owner: str) -> Flow[None]:
        # Drop the wish to write now, rather than keep readers out until it lapses; if
        # that cannot be sent, it lapses within ttl anyway.
        try:
            yield from self._call(client, self._release_op(owner))
        except AtomicOpsError as exc:
            logger.warning("atomicops: a waiting writer could not drop its wish (%s)",
                           type(exc).__name__)  # fmt: skip

    def _check_op(self, owner: str) -> Call[Any]:
        return Call("lock_check", [self.key], [owner])

    if TYPE_CHECKING:

        def __enter__(self) -> HeldWrite: ...

        async def __aenter__(self) -> HeldWrite: ...


if TYPE_CHECKING:

    class HeldRead(ReadLease):
        """A :class:`ReadLease` inside its ``with`` block (for type checkers only)."""

        fencing_token: int

    class HeldWrite(WriteLease):
        """A :class:`WriteLease` inside its ``with`` block (for type checkers only)."""

        fencing_token: int


class ReadWriteLock:
    """Many readers or one writer, with leases, fencing tokens and no writer starvation.

    ``ReadWriteLock(name, ttl)`` takes :class:`~atomicops.Lock`'s name and keyword
    options; they are the defaults of the leases :meth:`read` and :meth:`write` hand
    out, each a new object (hold it for the ``with`` block)::

        rw = ReadWriteLock("doc:7", ttl=10)
        with rw.read(timeout=10): ...            # shared with other readers
        with rw.write(timeout=10) as w:          # alone; w.fencing_token
            ...

    A writer that waits keeps new readers out (they wait behind it) until it is served,
    gives up, or its wish lapses (within ``ttl`` of its last attempt, see the module's
    docstring). All tokens, read and write, come from one fence: a write's token is
    larger than every token handed out before it.
    """

    def __init__(self, name: NameLike, ttl: float, **options: Unpack[LeaseOptions]) -> None:
        self.name, _ = name_and_tag(name, "rwlock")
        self._name = name
        self.ttl = ttl
        self._options = options
        # Checks every option now, not at the first read() or write().
        self.key = WriteLease(name, ttl, **options).key

    def __repr__(self) -> str:
        return f"<ReadWriteLock {self.name!r}>"

    def _lease(self, kind: type[L], timeout: float | None, ttl: float | None) -> L:
        options: dict[str, Any] = dict(self._options)
        if timeout is not None:
            options["timeout"] = timeout
        return kind(self._name, self.ttl if ttl is None else ttl, **options)

    def read(self, *, timeout: float | None = None, ttl: float | None = None) -> ReadLease:
        """A new read lease, not yet taken (``with`` takes it); ``timeout`` and ``ttl``
        override the lock's for this lease."""
        return self._lease(ReadLease, timeout, ttl)

    def write(self, *, timeout: float | None = None, ttl: float | None = None) -> WriteLease:
        """A new write lease, not yet taken (``with`` takes it); ``timeout`` and ``ttl``
        override the lock's for this lease."""
        return self._lease(WriteLease, timeout, ttl)
