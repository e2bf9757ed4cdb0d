"""Async auto-pipelining: calls made while a round trip is in flight share the next write.

Every async primitive call (``abounded_incr``, ``acompare_and_set``, ``afixed_window``...)
goes through one *lane* per client and event loop:

* when nothing is in flight on the lane, the call is written at once, alone, as
  without auto-pipelining (a lone task pays two attribute checks, no queue, no wait for
  the end of the loop turn);
* calls made while a round trip is in flight wait, and are written together as soon
  as it is back: one write, one read, for all of them, by the flow of
  :mod:`atomicops.primitives.batch` (one round trip per server, NOSCRIPT recovered, each
  call's error its own, every write of a round whose replies were lost
  ``OutcomeUnknown`` and never re-sent).

Sixty-four tasks calling at once then cost two writes instead of sixty-four, as ioredis'
``enableAutoPipelining`` and @upstash/redis' auto-pipelining do, and the lane carries
one round at a time, so its calls stay on the loop's pinned connection
(:mod:`atomicops.engine.pins`). ``ATOMICOPS["AUTO_PIPELINE"] = False`` sends every call
on its own. A call cancelled while it waits is taken out and never sent; one already
written is in flight, as a cancelled single call is.
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
from atomicops.scripts.registry import registry

__all__ = ["active", "refresh", "submit"]

active = True  # ATOMICOPS["AUTO_PIPELINE"], read once per settings change, not per call

Waiting = list[tuple[Queued, "asyncio.Future[Any]"]]


class _Lane:
    """One client's calls on one loop: whether a round trip is in flight, and the calls
    that wait for the next one."""

    __slots__ = ("__weakref__", "busy", "client", "loop", "waiting")

    def __init__(self, client: Any, loop: Any) -> None:
        self.busy = False
        self.waiting: Waiting = []
        self.loop = loop
        # Weak: a dropped client takes its lane with it.
        self.client = weakref.ref(client, lambda _: _lanes.pop(id_, None))
        id_ = id(client)


# id(client) -> its lane: a plain dict and an identity check, since every async call
# looks its lane up (a weak-keyed dict costs a lone call a few per cent).
_lanes: dict[int, _Lane] = {}


def refresh() -> None:
    """Read ``AUTO_PIPELINE`` again and point :func:`atomicops.primitives.calls.asend` at the lanes."""
    global active
    active = bool(get_settings()["AUTO_PIPELINE"])
    calls.pipelined = submit if active else None


def _reset(*, setting: str, **kwargs: Any) -> None:
    if setting == "ATOMICOPS":
        refresh()


setting_changed.connect(_reset, dispatch_uid="atomicops.primitives.autopipeline.reset")


def _lane(client: Any) -> _Lane:
    lane = _lanes.get(id(client))
    loop = asyncio.get_running_loop()
    if lane is None or lane.client() is not client or lane.loop is not loop:
        # A new client, or one used from another loop (its connections are that loop's).
        lane = _lanes[id(client)] = _Lane(client, loop)
    return lane


async def submit(call: Call[R], client: Any) -> R:
    """Send ``call`` for ``client`` (a resolved ``redis.asyncio`` client): at once when its
    lane is idle, else with every other call made meanwhile, when the lane is free."""
    lane = _lane(client)
    if not lane.busy:
        lane.busy = True
        try:
            script = registry.get(call.script)
            return call.interpret(await engine_run.arun(script.flow(call.keys, call.args, client)))
        finally:
            if lane.waiting:
                _next_round(lane, client)
            else:
                lane.busy = False
    if compat.is_cluster_client(client):
        topology.slot_of(call.keys, call.script)  # CrossSlotError here, as a single call
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    lane.waiting.append((Queued(call, BatchResult(), None), future))
    return await future  # type: ignore[no-any-return]


def _next_round(lane: _Lane, client: Any) -> None:
    """The lane's round trip is back: write what waited meanwhile, or free the lane."""
    waiting = [(entry, future) for entry, future in lane.waiting if not future.cancelled()]
    lane.waiting = []
    if waiting:
        # A task of its own: the caller whose round came back returns now, not after
        # the next round.
        asyncio.get_running_loop().create_task(_send(lane, waiting, client))
    else:
        lane.busy = False


async def _send(lane: _Lane, waiting: Waiting, client: Any) -> None:
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
    finally:
        _next_round(lane, client)
    for entry, future in waiting:
        if future.done():  # its caller was cancelled while the batch was in flight
            continue
        try:
            future.set_result(entry.result.result())
        except AtomicOpsError as exc:
            future.set_exception(exc)
