"""Auto-renewal of a lease: one flow on the engine's ``Pause``, run by a thread or a task.

:func:`renewal_flow` is written once: it pauses, renews through the lease's own flow, and
pauses again. A thread runs it with ``engine.run.run`` (its pauses end early when the
lease is released: ``Pause.until``); an asyncio task runs it with ``engine.run.arun``
(release cancels the task). The flow holds the lease only through a weak reference,
and only across one renewal, never across a pause: a lease dropped without
``release()`` stops being renewed. What a renewer needs of a lease is
:class:`Renewable`; :class:`~atomicops.leases.lease.Lease` provides it.
"""

from __future__ import annotations

import enum
import threading
import weakref
from collections.abc import Callable
from typing import Any, Protocol

from atomicops.engine.ops import Flow, Pause


class Renewal(enum.Enum):
    """What one renewal found."""

    OK = "ok"  # extended
    LOST = "lost"  # another owner has it, or the lease surely ran out
    STOP = "stop"  # released (or re-acquired) meanwhile: nothing left to renew
    RETRY = "retry"  # the server could not be reached; the lease may still run


class Renewable(Protocol):
    """The lease as a renewer sees it."""

    def renewal(self, client: Any, owner: str, stopped: Callable[[], bool]) -> Flow[Renewal]: ...

    def time_left(self, owner: str) -> float | None: ...

    def expire(self, owner: str) -> None: ...


def _never() -> bool:
    return False


def renewal_flow(
    ref: weakref.ref[Renewable],
    client: Any,
    owner: str,
    interval: float,
    max_renewals: int | None,
    stop: threading.Event | None = None,
) -> Flow[None]:
    """Renew ``owner``'s lease every ``interval`` seconds until it is released, lost or
    dropped; after ``max_renewals`` only wait for it to run out, and say so then.

    ``stop``: set when the lease is released (a thread's renewer then ends at once).
    """
    stopped = _never if stop is None else stop.is_set
    done = 0
    while max_renewals is None or done < max_renewals:
        if (yield Pause(interval, stop)):
            return
        lease = ref()
        if lease is None:
            return
        renewing = lease.renewal(client, owner, stopped)
        del lease
        status = yield from renewing
        del renewing
        if status is Renewal.OK:
            done += 1
        elif status is not Renewal.RETRY:
            return
    # No renewals left: the lease runs out at its deadline; say so then. Look again
    # after each wait: an extend() by the holder may have moved the deadline.
    while True:
        lease = ref()
        left = None if lease is None else lease.time_left(owner)
        if left == 0 and lease is not None:
            lease.expire(owner)
        del lease
        if not left:
            return
        if (yield Pause(left, stop)):
            return
