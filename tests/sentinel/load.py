"""Load for the Sentinel failover tests: forked processes calling atomicops until told to stop.

Each worker belongs to a group with its own settings (WAIT_REPLICAS 0 or 1: both run
through the same failover, each on keys of its own, so the losses of each are counted
apart) and calls, round after round, ``bounded_incr`` on the group's counters,
``compare_and_set`` on a key of its own, ``fixed_window`` and, every few rounds, a
``Lock``. It records what every call answered: increments acknowledged (with their time
and value), unknown (``OutcomeUnknown``) or applied but not confirmed by the replicas
(``NotReplicated``), fencing tokens with their time, and every error with its type, so the
test can hold the data left after the failover against the replies.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from atomicops import (
    AtomicOpsError,
    Lock,
    NotReplicated,
    OutcomeUnknown,
    bounded_incr,
    compare_and_set,
    fixed_window,
    get_counter,
    registry,
)
from atomicops.engine import connection, replication
from tests.multiproc import Workers

LIMIT = 10**9


@dataclass
class Group:
    name: str
    atomicops: dict  # the group's ATOMICOPS setting
    counters: int = 4

    def incr_keys(self) -> list[str]:
        return [f"{self.name}:incr:{i}" for i in range(self.counters)]


@dataclass
class Record:
    """What one worker saw."""

    worker: int
    group: str
    rounds: int = 0
    incr: dict[str, list[tuple[float, int]]] = field(default_factory=dict)  # acked (time, value)
    incr_unknown: Counter = field(default_factory=Counter)
    incr_unreplicated: Counter = field(default_factory=Counter)
    cas_refused: int = 0
    tokens: list[tuple[float, int]] = field(default_factory=list)  # (time granted, token)
    errors: list[tuple[float, str, str]] = field(default_factory=list)
    fallbacks: int = 0  # NOSCRIPT fallbacks this process met (a new primary, a flushed one)


def _work(index: int, stop: Any, group: Group, lock_every: int) -> Record:
    # The parent's clients came over with the fork; the group's settings are this
    # process's own (a forked child's settings are its copy).
    settings.ATOMICOPS = group.atomicops
    from atomicops.conf import get_settings

    get_settings.cache_clear()
    connection.reset_clients()
    replication.refresh()
    fallbacks_before = sum(script.stats["fallbacks"] for script in registry)
    record = Record(index, group.name)
    keys = group.incr_keys()
    cas_key, cas_value = f"{group.name}:cas:{index}", 0
    cas_unsure = False
    while not stop.is_set():
        record.rounds += 1
        key = keys[record.rounds % len(keys)]
        try:
            result = bounded_incr(key, LIMIT)
            assert result.applied, result
            record.incr.setdefault(key, []).append((time.time(), result.value))
        except Exception as exc:
            _error(record, "incr", exc)
            if isinstance(exc, OutcomeUnknown):
                record.incr_unknown[key] += 1
            elif isinstance(exc, NotReplicated):
                record.incr_unreplicated[key] += 1
        try:
            if cas_unsure:  # a lost reply or a lost write: read what is there
                cas_value, cas_unsure = int(get_counter(cas_key)), False
            new = str(cas_value + 1)
            if compare_and_set(cas_key, str(cas_value) if cas_value else None, new):
                cas_value += 1
            else:
                record.cas_refused += 1
                cas_unsure = True
        except Exception as exc:
            _error(record, "cas", exc)
            cas_unsure = True
        try:
            fixed_window(f"{group.name}:fw", LIMIT, 600_000)
        except Exception as exc:
            _error(record, "window", exc)
        if record.rounds % lock_every == 0:
            lock = Lock(f"{group.name}:lock:{index % 2}", ttl=2.0, timeout=3.0)
            try:
                if lock.acquire():
                    record.tokens.append((time.time(), lock.fencing_token))
                    lock.release()
            except Exception as exc:
                _error(record, "lock", exc)
    record.fallbacks = sum(script.stats["fallbacks"] for script in registry) - fallbacks_before
    return record


def _error(record: Record, what: str, exc: Exception) -> None:
    kind = type(exc).__name__ if isinstance(exc, AtomicOpsError) else f"UNTYPED {type(exc)!r}"
    record.errors.append((time.time(), f"{what}:{kind}", str(exc)[:300]))


class Load(Workers):
    """``per_group`` forked processes per group, running from ``with`` to :meth:`stop`."""

    def __init__(self, groups: list[Group], per_group: int = 4, lock_every: int = 3) -> None:
        super().__init__(_work, [(g, lock_every) for g in groups for _ in range(per_group)])


@dataclass
class Tally:
    """One group's figures after a failover, read against the data left on the primary."""

    group: str
    calls: int
    acked: int
    unknown: int
    unreplicated: int
    lost: int  # at least this many acknowledged increments are not in the data
    errors: Counter
    fallbacks: int


def tally(records: list[Record], group: Group, primary_client: Any) -> Tally:
    """Hold the counters on ``primary_client`` against ``group``'s records.

    Asserts that nothing was applied twice: a counter never exceeds its acknowledged,
    unknown and unconfirmed increments together.
    """
    mine = [r for r in records if r.group == group.name]
    lost = acked_total = 0
    for key in group.incr_keys():
        acked = sum(len(r.incr.get(key, [])) for r in mine)
        maybe = sum(r.incr_unknown[key] + r.incr_unreplicated[key] for r in mine)
        final = int(primary_client.get(key) or 0)
        assert final <= acked + maybe, (key, final, acked, maybe)  # nothing applied twice
        lost += max(0, acked - final)
        acked_total += acked
    return Tally(
        group=group.name,
        calls=sum(r.rounds for r in mine) * 3 + sum(len(r.tokens) for r in mine),
        acked=acked_total,
        unknown=sum(sum(r.incr_unknown.values()) for r in mine),
        unreplicated=sum(sum(r.incr_unreplicated.values()) for r in mine),
        lost=lost,
        errors=Counter(kind for r in mine for _, kind, _ in r.errors),
        fallbacks=sum(r.fallbacks for r in mine),
    )
