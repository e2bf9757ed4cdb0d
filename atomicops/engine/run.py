"""The one sync and the one async runner: every round trip of every operation goes here.

A flow yields :class:`~atomicops.engine.ops.Send` operations; the runner performs each
with :mod:`~atomicops.engine.wire` and sends the replies back. On a cluster a flow may
also yield a :class:`~atomicops.engine.ops.Pause` or a :class:`~atomicops.engine.ops.Refresh`
of the slot map (:mod:`~atomicops.engine.topology`), the only other things that wait. An atomicops error from
the wire (unreachable, outcome unknown) is thrown into the flow at the ``yield`` that
asked for the round trip, so flows can count it, settle state, or let it pass.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from atomicops.engine import topology, wire
from atomicops.engine.ops import Flow, Pause, Send, T
from atomicops.exceptions import AtomicOpsError


def run(flow: Flow[T]) -> T:
    """Drive ``flow`` to its end with blocking I/O and return its result."""
    try:
        op = next(flow)
        while True:
            try:
                if isinstance(op, Send):
                    replies: Any = wire.roundtrip(op)
                elif isinstance(op, Pause):
                    time.sleep(op.seconds)
                    replies = None
                else:
                    replies = topology.refresh(op)
            except AtomicOpsError as exc:
                op = flow.throw(exc)
            else:
                op = flow.send(replies)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    finally:
        flow.close()


async def arun(flow: Flow[T]) -> T:
    """Drive ``flow`` to its end over ``redis.asyncio`` and return its result."""
    try:
        op = next(flow)
        while True:
            try:
                if isinstance(op, Send):
                    replies: Any = await wire.aroundtrip(op)
                elif isinstance(op, Pause):
                    await asyncio.sleep(op.seconds)
                    replies = None
                else:
                    replies = await topology.arefresh(op)
            except AtomicOpsError as exc:
                op = flow.throw(exc)
            else:
                op = flow.send(replies)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    finally:
        flow.close()
