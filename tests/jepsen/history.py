"""Operation records of a history, as Jepsen keeps them.

One :class:`Op` per call a client made: its invocation time, then how it completed.
``ok``: it happened, with this output. ``fail``: it certainly did not happen (the server
refused, or could not be reached before anything was sent). ``info``: nobody knows
(``OutcomeUnknown``, ``NotReplicated``): it may have taken effect at any time after its
invocation, even after the end of the test, so its completion is open-ended.

Times are ``time.monotonic_ns()``: every process on one Linux machine reads the same
CLOCK_MONOTONIC, so the real-time order of two operations of different client processes
is their order on this clock.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Literal

Kind = Literal["ok", "fail", "info"]


@dataclass(frozen=True)
class Op:
    process: int  # the client process that made the call
    f: str  # what it called: "read", "cas", "write", "incr", ...
    key: str
    value: Any  # the arguments (cas: [expected, new])
    type: Kind
    output: Any  # what it answered (None for fail and info)
    start: int  # monotonic ns at invocation
    end: int | None  # monotonic ns at completion; None for info: never known to complete
    error: str | None = None  # the exception's type, for fail and info

    def interval(self) -> str:
        end = "..." if self.end is None else f"{self.end / 1e9:.6f}"
        return f"[{self.start / 1e9:.6f}, {end}]"

    def describe(self) -> str:
        """One line of a history excerpt: who, what, how it ended, when."""
        args = json.dumps(self.value)
        out = "" if self.type != "ok" else f" -> {json.dumps(self.output)}"
        why = f" ({self.error})" if self.error else ""
        return f"p{self.process} {self.f} {self.key} {args} {self.type}{out}{why} {self.interval()}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def excerpt(ops: list[Op], limit: int = 20) -> list[str]:
    """The ops in invocation order, one line each, at most ``limit`` of them."""
    ordered = sorted(ops, key=lambda op: op.start)
    lines = [op.describe() for op in ordered[:limit]]
    if len(ordered) > limit:
        lines.append(f"... and {len(ordered) - limit} more")
    return lines
