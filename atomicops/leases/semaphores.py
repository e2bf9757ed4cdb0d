"""A counting semaphore with leases and fencing tokens, on the lock's machinery.

Keys of the semaphore called ``name`` (one hash tag, so one cluster slot):

* ``<prefix>:sem:{name}``: a sorted set owner -> end of that holder's lease (the
  server's clock, ms). The grant script first drops holders whose lease has ended, so
  a crashed holder's slot comes back after its TTL;
* ``<prefix>:sem:{name}:tokens``: hash owner -> fencing token of that grant;
* ``<prefix>:sem:{name}:fence``: the last fencing token, expiring a second after the
  last grant's lease (tokens also never go below the server clock in microseconds);
* ``<prefix>:sem:{name}:wake``: the wake-up list blocked waiters ``BLPOP``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from atomicops.engine.ops import Call
from atomicops.exceptions import InvalidInput
from atomicops.leases.lease import WAKE_TTL_MS, Lease, LeaseOptions, NameLike, Wake
from atomicops.primitives.validate import MAX_EXACT

if TYPE_CHECKING:
    # typing.Unpack is 3.11+; annotations are strings here, only the type checker reads it
    from typing_extensions import Unpack


class Semaphore(Lease):
    """At most ``limit`` holders at once, each with a lease of ``ttl`` seconds.

    Same interface as :class:`~atomicops.Lock`: ``with``/``async with``,
    :meth:`acquire`, :meth:`release`, :meth:`extend`, :meth:`ensure_owned`, optional
    auto-renewal; each grant carries a :attr:`fencing_token` that increases across all
    grants of this semaphore name. A holder that dies keeps its slot until its lease
    ends, then the next acquire frees it. ``limit`` is not stored on the server: every
    user of one name should pass the same value.
    """

    kind = "semaphore"
    _key_kind = "sem"

    def __init__(
        self, name: NameLike, limit: int, ttl: float, **options: Unpack[LeaseOptions]
    ) -> None:
        super().__init__(name, ttl, **options)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_EXACT:
            raise InvalidInput(
                f"semaphore limit must be an int in [1, 2**53 - 1], got {limit!r}", key=self.key
            )
        self.limit = limit

    @property
    def _keys(self) -> list[str]:
        return [self.key, f"{self.key}:tokens"]

    def _acquire_op(self, owner: str, wait: Wake) -> Call[Any]:
        return Call(
            "semaphore_acquire",
            [*self._keys, f"{self.key}:fence", self._wake_key],
            [owner, self.limit, self.ttl_ms],
        )

    def _release_op(self, owner: str) -> Call[Any]:
        return Call(
            "semaphore_release",
            [*self._keys, self._wake_key],
            [owner, WAKE_TTL_MS, self.limit],
        )

    def _extend_op(self, owner: str, ttl_ms: int) -> Call[Any]:
        return Call("semaphore_extend", self._keys, [owner, ttl_ms])

    def _check_op(self, owner: str) -> Call[Any]:
        return Call("semaphore_check", self._keys, [owner])

    def holders(self) -> int:
        """How many leases are running now (one read-only round trip)."""
        return self._run(self._count_flow)

    async def aholders(self) -> int:
        """The async twin of :meth:`holders`."""
        return await self._arun(self._count_flow)

    if TYPE_CHECKING:  # inside ``with``, a slot is held: its token is an int

        def __enter__(self) -> HeldSemaphore: ...

        async def __aenter__(self) -> HeldSemaphore: ...


if TYPE_CHECKING:

    class HeldSemaphore(Semaphore):
        """A :class:`Semaphore` inside its ``with`` block (for type checkers only)."""

        fencing_token: int
