"""Async auto-pipelining: calls made concurrently on one event loop share one write.

With ``ATOMICOPS["AUTO_PIPELINE"] = True``, every async primitive call (``abounded_incr``,
``acompare_and_set``, ``afixed_window``...) is queued for its client instead of being
sent at once; the queue is sent at the end of the current loop turn as one batch (the
flow of :mod:`atomicops.primitives.batch`: one round trip per server, NOSCRIPT recovered, each
call's error its own, every write of a batch whose replies were lost ``OutcomeUnknown``
and never re-sent). Sixty-four tasks calling at once then cost one write and one read
instead of sixty-four of each, as ioredis' ``enableAutoPipelining`` and
@upstash/redis' auto-pipelining do.

Off by default: a lone caller waits for the end of the loop turn and pays for the queue
(measured in ``benchmarks/bench_batch.py``). Cancelling a call that is still queued takes
it out; one already sent is in flight, as a cancelled single call is.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from django.core.signals import setting_changed

from atomicops.conf import get_settings
from atomicops.engine import compat, topology
from atomicops.engine import run as engine_run
from atomicops.engine.ops import Call, R
from atomicops.exceptions import AtomicOpsError
from atomicops.primitives import calls
from atomicops.primitives.batch import BatchResult, Queued, batch_flow

__all__ = ["active", "refresh", "submit"]

active = False  # ATOMICOPS["AUTO_PIPELINE"], read once per settings change, not per call

Waiting = list[tuple[Queued, "asyncio.Future[Any]"]]


class _Queue:
    """The calls waiting for one client on one loop, and whether a send is scheduled."""

    __slots__ = ("scheduled", "waiting")

    def __init__(self) -> None:
        self.waiting: Waiting = []
        self.scheduled = False


# loop -> client -> queue; weak both ways, so neither a closed loop nor a dropped client
# is kept alive by a queue.
_queues: weakref.WeakKeyDictionary[Any, weakref.WeakKeyDictionary[Any, _Queue]] = (
    weakref.WeakKeyDictionary()
)


def refresh() -> None:
    """Read ``AUTO_PIPELINE`` again and point :func:`atomicops.primitives.calls.asend` at the queue."""
    global active
    active = bool(get_settings()["AUTO_PIPELINE"])
    calls.pipelined = submit if active else None


def _reset(*, setting: str, **kwargs: Any) -> None:
    if setting == "ATOMICOPS":
        refresh()


setting_changed.connect(_reset, dispatch_uid="atomicops.primitives.autopipeline.reset")


async def submit(call: Call[R], client: Any) -> R:
    """Queue ``call`` for ``client`` (a resolved ``redis.asyncio`` client) and wait for its
    result, sent with every other call queued in this loop turn."""
    loop = asyncio.get_running_loop()
    per_loop = _queues.get(loop)
    if per_loop is None:
        per_loop = _queues.setdefault(loop, weakref.WeakKeyDictionary())
    queue = per_loop.get(client)
    if queue is None:
        queue = per_loop.setdefault(client, _Queue())
    future: asyncio.Future[Any] = loop.create_future()
    entry = Queued(call, BatchResult(), None)
    if compat.is_cluster_client(client):
        topology.slot_of(call.keys, call.script)  # CrossSlotError here, as a single call
    queue.waiting.append((entry, future))
    if not queue.scheduled:
        queue.scheduled = True
        loop.call_soon(_flush, loop, queue, client)
    return await future  # type: ignore[no-any-return]


def _flush(loop: asyncio.AbstractEventLoop, queue: _Queue, client: Any) -> None:
    waiting = [(entry, future) for entry, future in queue.waiting if not future.cancelled()]
    queue.waiting = []
    queue.scheduled = False
    if waiting:
        loop.create_task(_send(waiting, client))


async def _send(waiting: Waiting, client: Any) -> None:
    entries = [entry for entry, _ in waiting]
    try:
        await engine_run.arun(batch_flow(entries, client))
    except AtomicOpsError as exc:
        for entry in entries:
            entry.abandon(exc)
    except BaseException as exc:  # cancelled, or a bug: every caller hears of it
        for _, future in waiting:
            if not future.done():
                future.set_exception(exc)
        raise
    for entry, future in waiting:
        if future.done():  # its caller was cancelled while the batch was in flight
            continue
        try:
            future.set_result(entry.result.result())
        except AtomicOpsError as exc:
            future.set_exception(exc)
