"""Prepared script calls, shared by the primitives.

A primitive validates its arguments while it builds a :class:`~atomicops.engine.ops.Call`
(which script, which keys and args, how to read the reply); :func:`run` and :func:`arun`
then send it through the engine's runners. So sync and async share everything but the
I/O, and bad input raises :class:`~atomicops.exceptions.InvalidInput` before anything is
sent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from atomicops.engine import connection
from atomicops.engine import run as engine_run
from atomicops.engine.ops import Call, Flow, R, as_is, text
from atomicops.exceptions import InvalidInput
from atomicops.primitives.keys import KeyLike, resolve_key
from atomicops.scripts.registry import registry

__all__ = ["Call", "asend", "call_flow", "resolve", "send"]


def resolve(key: KeyLike) -> tuple[str | bytes, str]:
    """The resolved key and its text for messages."""
    resolved = resolve_key(key)
    return resolved, text(resolved) or ""


def _no_pipeline(call: Call[Any], client: Any) -> None:
    if client is not None and connection.is_pipeline(client):
        # The reply is needed to build the result; queue the script itself instead:
        # registry.get(name)(keys=..., args=..., client=pipe).
        raise InvalidInput(
            f"key {text(call.keys[0])!r}: pass a client, not a pipeline",
            key=text(call.keys[0]),
        )


def call_flow(call: Call[R], client: Any) -> Flow[R]:
    """``call`` as a flow: its script's round trips, then its reply read by ``interpret``."""
    reply = yield from registry.get(call.script).flow(call.keys, call.args, client)
    return call.interpret(reply)


def send(call: Call[R], client: Any) -> R:
    """Send ``call`` now (sync); ``client`` None means the configured one."""
    _no_pipeline(call, client)
    # call_flow without its generator: the script's flow is run and its reply read here,
    # one resumption less per round trip on every hit of every primitive.
    script = registry.get(call.script)
    flow = script.flow(call.keys, call.args, connection.get_client(client))
    interpret = call.interpret
    reply = engine_run.run(flow)
    return reply if interpret is as_is else interpret(reply)


# AUTO_PIPELINE's queue (atomicops.primitives.autopipeline sets it when the setting is on), else
# None: one check per async call, and no import of the batch machinery from here.
pipelined: Callable[[Call[Any], Any], Awaitable[Any]] | None = None


async def asend(call: Call[R], client: Any) -> R:
    """The async twin of :func:`send`."""
    _no_pipeline(call, client)
    if pipelined is not None:
        return await pipelined(call, connection.get_async_client(client))  # type: ignore[no-any-return]
    script = registry.get(call.script)
    flow = script.flow(call.keys, call.args, connection.get_async_client(client))
    return call.interpret(await engine_run.arun(flow))
