"""A fair lock: waiters are granted the lock in the order they began waiting.

Keys of the fair lock called ``name`` (one hash tag, so one cluster slot):

* ``<prefix>:fairlock:{name}``: a hash ``{owner, token}`` with the lease as its TTL,
  existing exactly while the lock is held (the dashboard's lock listing finds it);
* ``...:queue``: the line, owner -> when it joined (server clock, microseconds);
* ``...:alive``: each waiter's heartbeat, owner -> when it lapses;
* ``...:fence``: the last fencing token (as for :class:`~atomicops.Lock`);
* ``...:wake``: the wake-up list the waiters block on (``BLPOP``).

The first live waiter in the line is the only one who may take the free lock, whether
the holder released it (the release wakes every waiter, and all but the first go back
to sleep) or died and its lease ran out (the first waiter's next attempt takes it).

Waiters prove they are alive: each attempt renews the waiter's heartbeat, and a waiter
attempts at least every :data:`BEAT_S` second (its ``BLPOP`` is bounded by that). A
waiter whose last attempt is older than :data:`DEAD_S` seconds (its process died, or it
was cut off) is dropped from the line by whoever looks at the line next. So a dead
waiter delays the line by at most ``DEAD_S + BEAT_S`` = 4 seconds after its death, and
dead waiters lapse side by side, not one after another: any number of them costs the
line those 4 seconds at most (Redisson's fair lock waits 5 s per dead waiter, in turn).
A waiter that gives up (its timeout) leaves the line at once. The price: a waiter sends
one small script call per second while it waits.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from atomicops.engine.ops import Call, Flow
from atomicops.exceptions import AtomicOpsError
from atomicops.lease import WAKE_TTL_MS, Lease, Wake

logger = logging.getLogger("atomicops")

# A waiter attempts again (renewing its heartbeat) at least this often.
BEAT_S = 1.0
# A waiter whose heartbeat is older than this is dropped from the line: three beats,
# so a live waiter on a loaded machine may miss two before it loses its place.
DEAD_S = 3.0


class FairLock(Lease):
    """A distributed mutex that serves its waiters in the order they began waiting.

    Same interface and options as :class:`~atomicops.Lock` (``with``/``async with``,
    :meth:`acquire`, :meth:`release`, :meth:`extend`, :meth:`ensure_owned`,
    :attr:`fencing_token`, auto-renewal, ``on_lost``), on keys of its own: a FairLock and
    a Lock of one name are two locks. A non-blocking acquire is granted only when nobody
    waits. The order holds across a lease that runs out unreleased, and a waiter that dies
    is skipped within ``DEAD_S + BEAT_S`` (4) seconds (see the module's docstring).
    """

    kind = "fairlock"
    _key_kind = "fairlock"

    def _acquire_op(self, owner: str, wait: Wake) -> Call[Any]:
        k = self.key
        return Call(
            "fairlock_acquire",
            [k, f"{k}:queue", f"{k}:alive", f"{k}:fence"],
            [owner, self.ttl_ms, int(wait), round(BEAT_S * 1000), round(DEAD_S * 1000)],
        )

    def _release_op(self, owner: str) -> Call[Any]:
        k = self.key
        keys = [k, f"{k}:queue", f"{k}:alive", self._wake_key]
        return Call("fairlock_release", keys, [owner, WAKE_TTL_MS])

    def _extend_op(self, owner: str, ttl_ms: int) -> Call[Any]:
        return Call("lock_extend", [self.key], [owner, ttl_ms])

    def _check_op(self, owner: str) -> Call[Any]:
        return Call("lock_check", [self.key], [owner])

    def _gave_up_flow(self, client: Any, owner: str) -> Flow[None]:
        # Leave the line now rather than stall it until the heartbeat lapses; if that
        # cannot be sent, the lapse (DEAD_S) takes it out anyway.
        try:
            yield from self._call(client, self._release_op(owner))
        except AtomicOpsError as exc:
            # The lock's name is the caller's text: not logged (nor the message naming it).
            logger.warning("atomicops: a fair lock's waiter could not leave the line (%s)",
                           type(exc).__name__)  # fmt: skip

    def locked(self) -> bool:
        """Whether anyone holds the lock now (one read-only round trip)."""
        return self._run(self._count_flow) > 0

    async def alocked(self) -> bool:
        """The async twin of :meth:`locked`."""
        return await self._arun(self._count_flow) > 0

    if TYPE_CHECKING:  # inside ``with``, the lock is held: its token is an int

        def __enter__(self) -> HeldFairLock: ...

        async def __aenter__(self) -> HeldFairLock: ...


if TYPE_CHECKING:

    class HeldFairLock(FairLock):
        """A :class:`FairLock` inside its ``with`` block (for type checkers only)."""

        fencing_token: int
