"""Auto-renewal of a lease: one flow on the engine's ``Pause``, run in the background.

:func:`renewal_flow` is written once: it pauses, renews through the lease's own flow, and
pauses again. Sync code's renewals all run on the process's background runner
(:mod:`atomicops.engine.background`, which also renews ``@idempotent``'s and
``get_or_set``'s claims: :mod:`atomicops.leases.claims`); async code's in an asyncio task
each (``engine.run.arun``). Release stops the job or cancels the task: either way the
flow is closed at its ``yield``, and a reply read after that is never acted on. The flow
holds the lease only through a weak reference, and only across one renewal, never
across a pause: a lease dropped without ``release()`` stops being renewed. What a
renewer needs of a lease is :class:`Renewable`; :class:`~atomicops.leases.lease.Lease`
provides it. :func:`log_name` is how renewals (and the leases) name a key in logs.
"""

from __future__ import annotations

import enum
import weakref
from typing import Any, Protocol

from atomicops.engine.ops import Flow, Pause
from atomicops.engine.redaction import key_digest


class Renewal(enum.Enum):
    """What one renewal found."""

    OK = "ok"  # extended
    LOST = "lost"  # another owner has it, or the lease surely ran out
    STOP = "stop"  # released (or re-acquired) meanwhile: nothing left to renew
    RETRY = "retry"  # the server could not be reached; the lease may still run


class Renewable(Protocol):
    """The lease as a renewer sees it."""

    def renewal(self, client: Any, owner: str) -> Flow[Renewal]: ...

    def time_left(self, owner: str) -> float | None: ...

    def expire(self, owner: str) -> None: ...


def log_name(kind: str, key: Any) -> str:
    """How logs name a lease or claim: its kind and a digest of its key, never the name a
    user chose (an e-mail address, a token) in clear."""
    return f"{kind} {key_digest(key)}"


def renewal_flow(
    ref: weakref.ref[Renewable], client: Any, owner: str, interval: float, max_renewals: int | None
) -> Flow[None]:
    """Renew ``owner``'s lease every ``interval`` seconds until it is released (the flow
    is stopped), lost or dropped; after ``max_renewals`` only wait for it to run out, and
    say so then."""
    done = 0
    while max_renewals is None or done < max_renewals:
        yield Pause(interval)
        lease = ref()
        if lease is None:
            return
        renewing = lease.renewal(client, owner)
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
        yield Pause(left)
