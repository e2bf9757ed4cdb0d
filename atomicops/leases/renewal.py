"""Auto-renewal of a lease: the schedule once, run by a thread or by an asyncio task.

A renewer holds the lease only through a weak reference, and only across one renewal,
never across a sleep: a lease dropped without ``release()`` stops being renewed. What a
renewer needs of a lease is :class:`Renewable`; :class:`~atomicops.leases.lease.Lease`
provides it.
"""

from __future__ import annotations

import asyncio
import enum
import threading
import weakref
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Protocol


class Renewal(enum.Enum):
    """What one renewal found."""

    OK = "ok"  # extended
    LOST = "lost"  # another owner has it, or the lease surely ran out
    STOP = "stop"  # released (or re-acquired) meanwhile: nothing left to renew
    RETRY = "retry"  # the server could not be reached; the lease may still run


class Renewable(Protocol):
    """The lease as a renewer sees it."""

    def renew(self, owner: str, stopped: Callable[[], bool]) -> Renewal: ...

    async def arenew(self, owner: str) -> Renewal: ...

    def time_left(self, owner: str) -> float | None: ...

    def expire(self, owner: str) -> None: ...


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class Renew:
    lease: Renewable


Steps = Generator[Sleep | Renew, Renewal | None, None]


def schedule(
    ref: weakref.ref[Renewable], owner: str, interval: float, max_renewals: int | None
) -> Steps:
    """The renewer's steps, written once for the thread and the task.

    Yields :class:`Sleep` and :class:`Renew` and is sent each renewal's
    :class:`Renewal`. After ``max_renewals`` it only waits for the lease to run out, and
    says so then.
    """
    done = 0
    while max_renewals is None or done < max_renewals:
        yield Sleep(interval)
        lease = ref()
        if lease is None:
            return
        status = yield Renew(lease)
        del lease
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
        yield Sleep(left)


def in_thread(steps: Steps, owner: str, stop: threading.Event) -> None:
    """Run ``steps`` in a (daemon) thread until they end or ``stop`` is set."""
    status: Renewal | None = None
    try:
        while True:
            step = steps.send(status)
            status = None
            if isinstance(step, Sleep):
                if stop.wait(step.seconds):
                    return
                continue
            status = step.lease.renew(owner, stop.is_set)
            del step
    except StopIteration:
        return
    finally:
        steps.close()


async def in_task(steps: Steps, owner: str) -> None:
    """Run ``steps`` in an asyncio task until they end or the task is cancelled."""
    status: Renewal | None = None
    try:
        while True:
            step = steps.send(status)
            status = None
            if isinstance(step, Sleep):
                await asyncio.sleep(step.seconds)
                continue
            # release() cancels this task, so a reply read after it is never acted on.
            status = await step.lease.arenew(owner)
            del step
    except StopIteration:
        return
    finally:
        steps.close()
