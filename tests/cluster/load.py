"""Load for the cluster chaos tests: forked processes calling atomicops until told to stop.

Each worker cycles over hash tags chosen by slot and, per tag, calls ``bounded_incr``, a
two-key registry script, ``compare_and_set`` on a key of its own, ``fixed_window`` and,
every few rounds, a ``Lock``. It records what every call answered (applied writes with
their time and value, fencing tokens, and every error by type), so the test can hold the
final data against the replies: nothing lost, nothing applied twice.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from redis.crc import key_slot

from atomicops import Lock, OutcomeUnknown, bounded_incr, compare_and_set, fixed_window, get_counter
from atomicops.engine import connection, topology
from atomicops.scripts.registry import ScriptRegistry
from tests.multiproc import Workers

PAIR_SOURCE = "return {redis.call('INCR', KEYS[1]), redis.call('INCR', KEYS[2])}"
LIMIT = 10**9


def tags_for(slots: list[int]) -> dict[int, str]:
    """A short string hashing to each of ``slots`` (a hash tag that lands there)."""
    wanted, found, n = set(slots), {}, 0
    while wanted:
        tag = f"t{n}"
        slot = key_slot(tag.encode())
        if slot in wanted:
            found[slot] = tag
            wanted.discard(slot)
        n += 1
    return found


def incr_key(tag: str) -> str:
    return f"{{{tag}}}:incr"


def pair_keys(tag: str) -> list[str]:
    return [f"{{{tag}}}:pa", f"{{{tag}}}:pb"]


def cas_key(tag: str, worker: int) -> str:
    return f"{{{tag}}}:cas:{worker}"


def window_key(tag: str) -> str:
    return f"{{{tag}}}:fw"


@dataclass
class Plan:
    tags: list[str]
    lock_every: int = 3  # a Lock round every this many rounds
    lock_ttl: float = 10.0
    lock_timeout: float = 10.0


@dataclass
class Record:
    """What one worker saw."""

    worker: int
    rounds: int = 0
    incr: dict[str, list[tuple[float, int]]] = field(default_factory=dict)  # (time, value)
    incr_unknown: Counter = field(default_factory=Counter)
    pair: Counter = field(default_factory=Counter)
    pair_unknown: Counter = field(default_factory=Counter)
    cas: dict[str, int] = field(default_factory=dict)  # key -> value it holds now
    cas_unsure: set[str] = field(default_factory=set)
    cas_refused: int = 0
    window: Counter = field(default_factory=Counter)
    window_unknown: Counter = field(default_factory=Counter)
    tokens: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    errors: list[tuple[float, str, str]] = field(default_factory=list)
    redirects: dict[str, int] = field(default_factory=dict)


def _work(index: int, stop: Any, plan: Plan) -> Record:
    connection.reset_clients()  # the parent's clients came over with the fork
    topology.redirects.reset()
    pair = ScriptRegistry().register("load_pair", PAIR_SOURCE)
    record = Record(index)
    tags = plan.tags[index % len(plan.tags) :] + plan.tags[: index % len(plan.tags)]
    while not stop.is_set():
        for tag in tags:
            if stop.is_set():
                break
            record.rounds += 1
            _step(record, "incr", tag, lambda tag=tag: _incr(record, tag))
            _step(record, "pair", tag, lambda tag=tag: _pair(record, pair, tag))
            _step(record, "cas", tag, lambda tag=tag: _cas(record, tag))
            _step(record, "window", tag, lambda tag=tag: _window(record, tag))
            if record.rounds % plan.lock_every == 0:
                _step(record, "lock", tag, lambda tag=tag: _lock(record, tag, plan))
    record.redirects = dict(topology.redirects)
    record.tokens = dict(record.tokens)
    return record


def _step(record: Record, what: str, tag: str, call: Any) -> None:
    try:
        call()
    except Exception as exc:  # all recorded, AtomicOpsError or not: the test decides
        record.errors.append((time.time(), f"{what}:{type(exc).__name__}", str(exc)[:300]))
        if isinstance(exc, OutcomeUnknown):
            if what == "incr":
                record.incr_unknown[incr_key(tag)] += 1
            elif what == "pair":
                record.pair_unknown[tag] += 1
            elif what == "window":
                record.window_unknown[window_key(tag)] += 1
            elif what == "cas":
                record.cas_unsure.add(cas_key(tag, record.worker))


def _incr(record: Record, tag: str) -> None:
    key = incr_key(tag)
    result = bounded_incr(key, LIMIT)
    assert result.applied, result
    record.incr.setdefault(key, []).append((time.time(), result.value))


def _pair(record: Record, pair: Any, tag: str) -> None:
    a, b = pair(pair_keys(tag))
    assert a == b, (tag, a, b)  # the two keys always move together
    record.pair[tag] += 1


def _cas(record: Record, tag: str) -> None:
    key = cas_key(tag, record.worker)
    if key in record.cas_unsure:  # a reply was lost, or a failover lost a write: read it
        record.cas[key] = get_counter(key)
        record.cas_unsure.discard(key)
    current = record.cas.get(key, 0)
    if compare_and_set(key, str(current) if current else None, str(current + 1)):
        record.cas[key] = current + 1
    else:
        record.cas_refused += 1
        record.cas_unsure.add(key)


def _window(record: Record, tag: str) -> None:
    key = window_key(tag)
    result = fixed_window(key, LIMIT, 600_000)
    assert result.allowed, result
    record.window[key] += 1


def _lock(record: Record, tag: str, plan: Plan) -> None:
    lock = Lock(tag, ttl=plan.lock_ttl, timeout=plan.lock_timeout)
    if not lock.acquire():
        raise AssertionError(f"lock {tag} not acquired within {plan.lock_timeout}s")
    record.tokens[tag].append(lock.fencing_token)
    lock.release()


class Load(Workers):
    """``workers`` forked processes running the plan from ``with`` to :meth:`stop`."""

    def __init__(self, plan: Plan, workers: int = 8) -> None:
        super().__init__(_work, [(plan,)] * workers)


def totals(records: list[Record]) -> dict[str, int]:
    """Redirects met by all workers, summed."""
    out: Counter = Counter()
    for record in records:
        out.update(record.redirects)
    return dict(out)
