"""Every process's counts, per minute, in Redis: what the admin dashboard sums and charts.

Each process counts in memory already (:class:`~atomicops.scripts.registry.ScriptStats` per
script, :data:`atomicops.ops.observe.rate_limits` per rate-limit group). A daemon thread
(:class:`Flusher`) adds what changed since its last flush to the current minute's hash,
``<KEY_PREFIX>:stats:{timeline}:<minute>``, every ``STATS_FLUSH_INTERVAL`` seconds: one
``MULTI``/``HINCRBY``.../``EXPIRE``/``EXEC`` batch in one round trip through the engine,
never on a call's path. A minute's hash expires :data:`RETENTION` seconds after its last
flush. The dashboard reads the last hour with one round trip (:func:`read`).

What can be lost: a process killed with ``kill -9`` loses what it counted since its last
flush (at most one interval); a clean exit flushes once more (``atexit``). A flush whose
batch could not be sent is retried with the next one; one whose reply was lost is not
(``EXEC`` may have run: counting it twice would be worse than missing it). Counts land
in the minute of the flush that carries them, so up to one interval late.

Fields of a minute's hash: ``calls:<script>``, ``fallbacks:<script>``,
``errors:<script>``, ``allowed:<group>``, ``refused:<group>``. The keys share the hash
tag ``{timeline}``, so on a cluster they live on one node and an hour is one round trip.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from atomicops.conf import get_settings
from atomicops.engine import connection, topology
from atomicops.engine import run as engine_run
from atomicops.engine.ops import Context, Flow, Send, text
from atomicops.exceptions import AtomicOpsError, OutcomeUnknown, RedisUnavailable
from atomicops.ops import observe
from atomicops.primitives import keys

__all__ = [
    "RETENTION",
    "Flusher",
    "Minute",
    "Timeline",
    "bucket_key",
    "counts",
    "flusher",
    "interval",
    "read",
]

logger = logging.getLogger("atomicops")

MINUTES = 60  # what the dashboard shows
RETENTION = 65 * 60  # seconds a minute's hash lives after its last flush: the hour, and margin
SCRIPT_FIELDS = ("calls", "fallbacks", "errors")
GROUP_FIELDS = ("allowed", "refused")
SERIES = ("calls", "fallbacks", "errors", "refused", "allowed")


def bucket_key(minute: int) -> str:
    """The hash of one minute (``minute``: Unix time // 60)."""
    return f"{keys.tagged('stats', 'timeline')}:{minute}"


def counts() -> dict[str, int]:
    """This process's running totals, as the hash fields they are flushed to."""
    from atomicops.scripts.registry import registry

    found: dict[str, int] = {}
    for script in registry:
        for name in SCRIPT_FIELDS:
            value = script.stats[name]
            if value:
                found[f"{name}:{script.name}"] = value
    for group, allowed in observe.rate_limits:
        found[f"{'allowed' if allowed else 'refused'}:{group}"] = observe.rate_limits[
            group, allowed
        ]
    return found


_warned: list[Any] = []


def interval() -> float:
    """``STATS_FLUSH_INTERVAL`` in seconds; 0 when off (0, None, or not a positive number)."""
    value = get_settings()["STATS_FLUSH_INTERVAL"]
    if value is None or value == 0:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        if value not in _warned:
            _warned.append(value)
            logger.warning(
                "atomicops: STATS_FLUSH_INTERVAL must be a number of seconds > 0, or 0/None "
                "for off; got %r: the dashboard's timeline is off",
                value,
            )
        return 0.0
    return float(value)


def _flush_flow(client: Any, key: str, deltas: dict[str, int]) -> Flow[None]:
    batch: list[tuple[Any, ...]] = [
        ("MULTI",),
        *(("HINCRBY", key, name, amount) for name, amount in deltas.items()),
        ("EXPIRE", key, RETENTION),
        ("EXEC",),
    ]
    # Only EXEC applies anything, and it is last: a batch cut short applied nothing.
    context = Context("adding this process's counts to the timeline", key, script=False)
    route = topology.Route(client, [key], "timeline flush")
    yield from route.start()
    while True:
        try:
            replies = yield Send(route.target, [*route.prefix, *batch], context)
        except RedisUnavailable as exc:
            if (yield from route.unreachable(exc)):
                continue
            raise
        replies = replies[len(route.prefix) :]
        if not isinstance(replies[-1], Exception):
            return
        # A refused command (MOVED, OOM...) aborts the transaction: EXEC says EXECABORT.
        first = next((r for r in replies[1:-1] if isinstance(r, Exception)), replies[-1])
        if (yield from route.redirected(first)):
            continue
        raise _reply_error(first, key)


def _reply_error(reply: Exception, key: str) -> AtomicOpsError:
    from atomicops.scripts.registry import reply_error

    return reply_error(reply, script="timeline", keys=[key])


class Flusher:
    """Adds this process's new counts to Redis: :meth:`flush` now, or every interval
    from a daemon thread (:meth:`start`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sent: dict[str, int] = {}  # the totals the last flush accounted for
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.flushes = 0  # successful flushes that wrote something (tests, logs)
        self._paused = 0

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def flush(self, client: Any = None, *, now: float | None = None) -> int:
        """Add what changed since the last flush to the current minute; one round trip
        when something did, none otherwise. Returns how many fields were written.

        Raises what the write raised: :class:`RedisUnavailable` (kept for the next
        flush), :class:`OutcomeUnknown` or another error (dropped, not sent twice).
        """
        with self._lock:
            if self._paused:
                return 0
            current = counts()
            deltas = {}
            for name, value in current.items():
                before = self._sent.get(name, 0)
                # Lower than before: the counters were reset (tests): all of it is new.
                delta = value - before if value >= before else value
                if delta:
                    deltas[name] = delta
            if not deltas:
                return 0
            minute = int((time.time() if now is None else now) // 60)
            try:
                target = connection.get_client(client)
                engine_run.run(_flush_flow(target, bucket_key(minute), deltas))
            except OutcomeUnknown:
                self._sent = current
                raise
            except RedisUnavailable:
                raise  # nothing was applied: the next flush carries these counts too
            except AtomicOpsError:
                self._sent = current
                raise
            self._sent = current
            self.flushes += 1
            return len(deltas)

    def start(self) -> bool:
        """Start the flushing thread unless it runs; False when the interval is 0."""
        if interval() <= 0:
            return False
        with self._lock:
            if self.running:
                return True
            self._stop = threading.Event()
            self._thread = threading.Thread(
                target=self._loop, args=(self._stop,), name="atomicops-timeline", daemon=True
            )
            self._thread.start()
        return True

    def stop(self, *, flush: bool = True) -> None:
        """Stop the thread (after one last flush, by default)."""
        thread, self._thread = self._thread, None
        self._stop.set()
        if thread is not None and thread.is_alive():
            thread.join(10)
        if flush:
            self._flush_quietly()

    def _loop(self, stop: threading.Event) -> None:
        while not stop.wait(interval() or 1.0):
            if interval() > 0:
                self._flush_quietly()

    def _flush_quietly(self) -> None:
        try:
            self.flush()
        except OutcomeUnknown as exc:
            logger.warning("atomicops: timeline counts may be lost: %s", exc)
        except AtomicOpsError as exc:
            logger.warning("atomicops: timeline not updated: %s", exc)
        except Exception:  # the thread must survive anything, and say what it was
            logger.exception("atomicops: timeline flush failed")

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """No flush while inside (and what was counted meanwhile is never flushed): the
        pytest plugin's fixtures use it, so no key appears in a test's server unasked."""
        with self._lock:
            self._paused += 1
        try:
            yield
        finally:
            with self._lock:
                self._paused -= 1
                self._sent = counts()

    def forget(self) -> None:
        """Take the current totals as flushed: what a forked child inherited is its
        parent's to flush, not the child's."""
        self._sent = counts()

    def _after_fork(self) -> None:
        # The lock may have been held by the parent's thread, which the child lacks.
        self._lock = threading.Lock()
        self.forget()
        self.flushes = 0
        was_running, self._thread = self._thread is not None, None
        if was_running:  # a pre-forking server: every worker flushes its own counts
            self.start()

    def _at_exit(self) -> None:
        if self._thread is not None:
            self.stop()


flusher = Flusher()
atexit.register(flusher._at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=flusher._after_fork)


# -- reading ------------------------------------------------------------------------


@dataclass(frozen=True)
class Minute:
    """One minute's sums over every process; ``start`` is its Unix time."""

    start: int
    calls: int = 0
    fallbacks: int = 0
    errors: int = 0
    refused: int = 0
    allowed: int = 0


@dataclass
class Timeline:
    """The last :data:`MINUTES` minutes, oldest first, and the window's sums per script
    and per rate-limit group."""

    minutes: list[Minute]
    scripts: dict[str, dict[str, int]] = field(default_factory=dict)
    groups: dict[str, dict[str, int]] = field(default_factory=dict)

    def total(self, series: str) -> int:
        return sum(getattr(minute, series) for minute in self.minutes)

    @property
    def totals(self) -> dict[str, int]:
        return {series: self.total(series) for series in SERIES}


def _read_flow(client: Any, names: list[str]) -> Flow[list[Any]]:
    context = Context("reading the timeline", names[0], write=False, script=False)
    route = topology.Route(client, names, "timeline read")
    yield from route.start()
    while True:
        try:
            replies = yield Send(
                route.target, [*route.prefix, *(("HGETALL", n) for n in names)], context
            )
        except RedisUnavailable as exc:
            if (yield from route.unreachable(exc)):
                continue
            raise
        replies = replies[len(route.prefix) :]
        failed = next((r for r in replies if isinstance(r, Exception)), None)
        if failed is None:
            return list(replies)
        if (yield from route.redirected(failed)):
            continue
        raise _reply_error(failed, names[0])


def read(client: Any = None, *, now: float | None = None, minutes: int = MINUTES) -> Timeline:
    """The last ``minutes`` minutes (the current one included), summed over every
    process that flushed to this Redis. One round trip; raises :class:`AtomicOpsError`."""
    last = int((time.time() if now is None else now) // 60)
    span = range(last - minutes + 1, last + 1)
    replies = engine_run.run(
        _read_flow(connection.get_client(client), [bucket_key(m) for m in span])
    )
    timeline = Timeline(minutes=[])
    for minute, reply in zip(span, replies, strict=True):
        sums = dict.fromkeys(SERIES, 0)
        for raw_name, raw_value in (reply or {}).items():
            kind, _, name = (text(raw_name) or "").partition(":")
            if kind not in sums:
                continue  # a field a newer version writes
            try:
                value = int(raw_value)
            except (TypeError, ValueError):
                continue
            sums[kind] += value
            per = timeline.scripts if kind in SCRIPT_FIELDS else timeline.groups
            fields = SCRIPT_FIELDS if kind in SCRIPT_FIELDS else GROUP_FIELDS
            row = per.setdefault(name, dict.fromkeys(fields, 0))
            row[kind] += value
        timeline.minutes.append(Minute(start=minute * 60, **sums))
    return timeline
