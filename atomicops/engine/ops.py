"""The typed operations that flows yield, and the context errors are named by."""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, TypeVar

from atomicops.exceptions import OutcomeUnknown, RedisUnavailable, ServerRefused

T = TypeVar("T")
R = TypeVar("R")
Command = Sequence[Any]


def text(value: Any) -> str | None:
    """``value`` (a key, or a value read back) as text for messages: bytes decoded."""
    if value is None:
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class Context(NamedTuple):
    """What a round trip is for: named in its errors, and whether it may write.

    A batch that may write is sent at most once; a read-only one is sent once more on a
    fresh connection when its reply is lost.
    """

    what: str  # a script name, or what the batch does ("loading the scripts")
    key: Any = None
    write: bool = True
    script: bool = True  # ``what`` names a script

    def subject(self) -> str:
        """``script 'name' on key 'k'``, or the operation's own words."""
        subject = f"script {self.what!r}" if self.script else self.what
        return subject + (f" on key {text(self.key)!r}" if self.key is not None else "")

    def unavailable(self, exc: BaseException) -> RedisUnavailable:
        return RedisUnavailable(
            f"Redis unreachable; {self.subject()} was not applied: {exc}",
            script=self.what if self.script else None,
            key=text(self.key),
        )

    def refused(self, code: str, why: str) -> ServerRefused:
        """Refused before anything was sent (``code`` as a server's would be)."""
        return ServerRefused(
            f"{why}; {self.subject()} was not applied",
            code=code,
            script=self.what if self.script else None,
            key=text(self.key),
        )

    def unknown(self, exc: BaseException) -> OutcomeUnknown:
        return OutcomeUnknown(
            f"{self.subject()} was sent but no reply came ({exc}); it may or may not have "
            "been applied, and atomicops did not re-send it",
            script=self.what if self.script else None,
            key=text(self.key),
        )


class Send(NamedTuple):
    """One round trip: ``commands`` written at once to ``target``; the flow gets every
    reply back (an error reply as its exception object, not raised)."""

    target: Any  # a plain redis-py client (sync or asyncio): one server
    commands: Sequence[Command]
    context: Context


class Pause(NamedTuple):
    """Wait ``seconds`` before the next round trip (a server said: try again shortly; a
    renewal is due later). ``until``: an event that ends the wait early for the sync
    runner (an asyncio flow is cancelled instead, a background one stopped:
    :mod:`atomicops.engine.background` only looks at it when the pause is over); the
    flow is sent whether it was set."""

    seconds: float
    until: threading.Event | None = None


class Refresh(NamedTuple):
    """Re-read a cluster client's slot map (redis-py's own round trips, done by the runner).

    ``moved``: the MOVED reply that said where one slot went; ``failed``: the name of a
    node that could not be reached (asked last). The flow is sent back whether it worked.
    """

    client: Any
    moved: Any = None
    failed: str | None = None


def as_is(reply: Any) -> Any:
    """The reply as the script's header converted it: a Call without a result object."""
    return reply


# A dataclass, not a NamedTuple: it is generic in its result (a generic NamedTuple needs
# Python 3.11), and not frozen, which would cost every hit a few object.__setattr__.
@dataclass(slots=True)
class Call(Generic[R]):
    """One prepared script call: which script, with what, and how to read its reply.

    Primitives validate their arguments while they build a Call, so bad input raises
    before anything is sent, and sync and async share the building. A reply is
    converted once, by the script's header (``result: int``, ``bool``, ``decimal``...);
    ``interpret`` then only builds a primitive's result object from it (a
    ``CounterResult``, a ``RateLimitResult``), and is left out where the converted reply
    is the result. The planner turns a Call into a
    :class:`~atomicops.engine.planner.Planned` (where it goes, what was sent) when it
    sends it.
    """

    script: str
    keys: list[Any]
    args: list[Any]
    interpret: Callable[[Any], R] = as_is


# A flow yields Send operations (and, on a cluster, the rare Pause or Refresh), is sent
# each one's replies, and returns its result.
Flow = Generator[Send | Pause | Refresh, Any, T]
