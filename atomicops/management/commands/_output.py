"""Plain-text tables for the atomicops commands (not a command: the name starts with _)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from atomicops.engine.redaction import redact_text
from atomicops.exceptions import AtomicOpsError, RedisUnavailable, ServerRefused


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if value is True:
        return "yes"
    if value is False:
        return "no"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns separated by two spaces, with a header rule."""
    text = [[cell(value) for value in row] for row in rows]
    widths = [max([len(h), *(len(row[i]) for row in text)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for row in text:
        lines.append("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def failure(doing: str, exc: AtomicOpsError) -> str:
    """``"<doing> failed: <why>"`` for a command's error, in the operator's terms.

    An unreachable server is said as such, with the connection error (the library's
    message names the internal round trip, which says nothing to whoever runs the
    command); a refusal (``LOADING``, ``OOM``...) or a script error keeps its own words.
    """
    cause = exc.__cause__
    # Through the one redaction: a library's words about a URL may quote its secrets.
    if isinstance(exc, RedisUnavailable) and not isinstance(exc, ServerRefused) and cause:
        return redact_text(f"{doing} failed: the server is unreachable ({cause})")
    return redact_text(f"{doing} failed: {exc.message}")
