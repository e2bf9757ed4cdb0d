"""Named per-process counters, safe across threads: script stats, cluster redirects."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping


class Tally(Mapping[str, int]):
    """A fixed set of named counters, read as a mapping; subclasses name ``fields``."""

    fields: tuple[str, ...] = ()

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values = dict.fromkeys(self.fields, 0)

    def bump(self, field: str) -> None:
        with self._lock:
            self._values[field] += 1

    def reset(self) -> None:
        with self._lock:
            self._values = dict.fromkeys(self.fields, 0)

    def __getitem__(self, field: str) -> int:
        return self._values[field]

    def __iter__(self) -> Iterator[str]:
        return iter(self.fields)

    def __len__(self) -> int:
        return len(self.fields)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({dict(self._values)})"
