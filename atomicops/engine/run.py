"""The one sync and the one async runner: every round trip of every operation goes here.

A flow yields :class:`~atomicops.engine.ops.Send` operations; the runner performs each
with :mod:`~atomicops.engine.wire` and sends the replies back. On a cluster a flow may
also yield a :class:`~atomicops.engine.ops.Pause` or a :class:`~atomicops.engine.ops.Refresh`
of the slot map (:mod:`~atomicops.engine.topology`), the only other things that wait. An atomicops error from
the wire (unreachable, outcome unknown) is thrown into the flow at the ``yield`` that
asked for the round trip, so flows can count it, settle state, or let it pass.

A flow that also runs the caller's code (``@idempotent``'s view, ``get_or_set``'s
``compute``) yields its own operations for that, and the runner hands them to
``perform``: whatever ``perform`` raises, ``KeyboardInterrupt`` and ``CancelledError``
included, is thrown into the flow, which releases its claim and re-raises.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Generator
from typing import Any

from atomicops.engine import topology, wire
from atomicops.engine.ops import Pause, Refresh, Send, T
from atomicops.exceptions import AtomicOpsError

_ENGINE_OPS = (Send, Pause, Refresh)


def _no_perform(op: Any) -> Any:
    raise TypeError(f"a flow yielded {op!r}, which is no engine operation")


def run(flow: Generator[Any, Any, T], perform: Callable[[Any], Any] = _no_perform) -> T:
    """Drive ``flow`` to its end with blocking I/O and return its result.

    ``perform(op)``: what to do with an operation of the flow's own (see above).
    """
    try:
        op = next(flow)
        while True:
            try:
                if isinstance(op, Send):
                    replies: Any = wire.roundtrip(op)
                elif isinstance(op, Pause):
                    if op.until is None:
                        time.sleep(op.seconds)
                        replies = False
                    else:
                        replies = op.until.wait(op.seconds)
                elif isinstance(op, Refresh):
                    replies = topology.refresh(op)
                else:
                    replies = perform(op)
            except AtomicOpsError as exc:
                op = flow.throw(exc)
            except BaseException as exc:
                if isinstance(op, _ENGINE_OPS):
                    raise
                op = flow.throw(exc)
            else:
                op = flow.send(replies)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    finally:
        flow.close()


async def _ano_perform(op: Any) -> Any:
    _no_perform(op)


async def arun(
    flow: Generator[Any, Any, T], perform: Callable[[Any], Awaitable[Any]] = _ano_perform
) -> T:
    """Drive ``flow`` to its end over ``redis.asyncio`` and return its result."""
    try:
        op = next(flow)
        while True:
            try:
                if isinstance(op, Send):
                    replies: Any = await wire.aroundtrip(op)
                elif isinstance(op, Pause):
                    await asyncio.sleep(op.seconds)
                    replies = False
                elif isinstance(op, Refresh):
                    replies = await topology.arefresh(op)
                else:
                    replies = await perform(op)
            except AtomicOpsError as exc:
                op = flow.throw(exc)
            except BaseException as exc:
                if isinstance(op, _ENGINE_OPS):
                    raise
                op = flow.throw(exc)
            else:
                op = flow.send(replies)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    finally:
        flow.close()
