"""Prometheus metrics (``pip install "atomicops[metrics]"``) and a view that serves them.

Every name starts with ``atomicops_``:

=============================================  ================================================
``atomicops_script_calls_total{script}``        script calls started
``atomicops_script_fallbacks_total{script}``    NOSCRIPT recoveries (the call re-sent as EVAL)
``atomicops_script_errors_total{script,error}`` calls that raised, by exception class
``atomicops_script_outcome_unknown_total``      ``{script}``: writes whose reply was lost
``atomicops_script_retries_total``              ``{script,reason}``: calls sent again after
                                                a failure that proved they did not run
``atomicops_script_duration_seconds{script}``   histogram: a call's time, round trips included
``atomicops_lock_wait_seconds``                 histogram ``{kind,prefix,outcome}``: acquire
                                                start to granted (``acquired``) or given up
                                                (``not_acquired``); kind ``lock``, ``semaphore``,
                                                ``fairlock``, ``rwlock_read``, ``rwlock_write``
                                                or ``multilock``
``atomicops_lock_hold_seconds{kind,prefix}``    histogram: granted to release
``atomicops_ratelimit_allowed_total{group}``    rate-limit hits let through
``atomicops_ratelimit_refused_total{group}``    rate-limit hits refused
``atomicops_idempotency_not_stored_total``      ``{reason}``: ``@idempotent`` responses not
                                                stored (``client_bound``: the client is past
                                                ``IDEMPOTENCY_MAX_CLIENT_BYTES``)
=============================================  ================================================

No label carries text a user chose. ``prefix`` is a lease name up to its first ``:``
when that looks like an identifier chosen by code, else ``other``
(:func:`atomicops.ops.observe.lease_prefix`); ``group`` is a ``@rate_limit`` group,
``drf:<scope>`` for a DRF throttle, or the function's name (``fixed_window``...) for
direct calls. Each is bounded to ``observe.LABEL_LIMIT`` distinct values per process
(the rest are ``other``), so ``/metrics`` stays bounded whatever names are used.

How they cost a call nothing measurable: nothing here runs on a call's path. atomicops
counts every call anyway, in plain integers under a lock
(:class:`~atomicops.scripts.registry.ScriptStats`, the tables of
:mod:`atomicops.ops.observe`); while metrics are on the planner also adds each call's
duration to its script's bucket array. :class:`Collector`, registered once in
prometheus_client's default registry (which django-prometheus' ``/metrics`` exports),
turns those numbers into metric families when it is scraped.

Several processes (``PROMETHEUS_MULTIPROC_DIR``): :data:`snapshots` adds what each
process counted since its last write to prometheus_client's own per-process files every
:data:`SNAPSHOT_INTERVAL` seconds from a daemon thread, at exit, and before
:func:`metrics_view` reads them, so ``MultiProcessCollector`` (django-prometheus',
:func:`metrics_view`) sums every process as it sums any counter or histogram.

prometheus_client is imported only by :func:`register`, :class:`Collector`,
:data:`snapshots` and :func:`metrics_view`, never when atomicops is imported.
"""

from __future__ import annotations

import atexit
import importlib.util
import logging
import os
import threading
from collections.abc import Iterator
from typing import Any, NamedTuple

from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed

from atomicops.engine.tally import Buckets
from atomicops.ops import observe
from atomicops.ops.observe import LEASE_BUCKETS
from atomicops.scripts.registry import SCRIPT_BUCKETS

__all__ = [
    "LEASE_BUCKETS",
    "SCRIPT_BUCKETS",
    "SCRIPT_COUNTS",
    "SNAPSHOT_INTERVAL",
    "Collector",
    "Series",
    "Snapshots",
    "available",
    "metrics_view",
    "register",
    "series",
    "snapshots",
    "unregister",
]

logger = logging.getLogger("atomicops")

# name -> (type, help, label names): every family the collector exports, even when empty.
FAMILIES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "atomicops_script_calls": ("counter", "Script calls started.", ("script",)),
    "atomicops_script_fallbacks": (
        "counter",
        "Script calls that met NOSCRIPT and were sent again with the script's body.",
        ("script",),
    ),
    "atomicops_script_errors": (
        "counter",
        "Script calls that raised, by exception class.",
        ("script", "error"),
    ),
    "atomicops_script_outcome_unknown": (
        "counter",
        "Script calls whose reply was lost after they were sent (OutcomeUnknown).",
        ("script",),
    ),
    "atomicops_script_retries": (
        "counter",
        "Script calls sent again after a failure that proved they did not run, by reason.",
        ("script", "reason"),
    ),
    "atomicops_script_duration_seconds": (
        "histogram",
        "Time of a script call, its round trips included.",
        ("script",),
    ),
    "atomicops_lock_wait_seconds": (
        "histogram",
        "Time from an acquire's start to the lease granted or given up.",
        ("kind", "prefix", "outcome"),
    ),
    "atomicops_lock_hold_seconds": (
        "histogram",
        "Time from a lease granted to its release.",
        ("kind", "prefix"),
    ),
    "atomicops_ratelimit_allowed": ("counter", "Rate-limit hits let through.", ("group",)),
    "atomicops_ratelimit_refused": ("counter", "Rate-limit hits refused.", ("group",)),
    "atomicops_idempotency_not_stored": (
        "counter",
        "@idempotent responses not stored, by reason.",
        ("reason",),
    ),
}

# A ScriptStats count -> the family it is exported as. Plain counts (``stats["calls"]``)
# have the label ``script``; labelled ones (``stats.count("error", "DataError")``) also
# the family's second label. A new per-script count is one line here (and its family).
SCRIPT_COUNTS: dict[str, str] = {
    "calls": "atomicops_script_calls",
    "fallbacks": "atomicops_script_fallbacks",
    "error": "atomicops_script_errors",
    "outcome_unknown": "atomicops_script_outcome_unknown",
    "retry": "atomicops_script_retries",  # stats.retried(reason), by reason
}


def available() -> bool:
    """Whether prometheus_client is installed (found without importing it)."""
    return importlib.util.find_spec("prometheus_client") is not None


class Series(NamedTuple):
    """One labelled series of a family: a count, or a histogram's buckets."""

    family: str
    labels: tuple[str, ...]
    value: float | Buckets


def series() -> Iterator[Series]:
    """Every series this process has counted, read now (what a scrape exports)."""
    from atomicops.scripts.registry import every_script

    # Scripts of the same name in two registries (one made apart) share their series.
    counts: dict[tuple[str, tuple[str, ...]], int] = {}
    durations: dict[str, Buckets] = {}
    for script in every_script():
        name = script.name
        values, labelled, timed = script.stats.snapshot()
        if values["calls"]:
            for count, value in values.items():
                family = SCRIPT_COUNTS.get(count)
                if family is not None:
                    counts[family, (name,)] = counts.get((family, (name,)), 0) + value
        for (count, label), value in labelled.items():
            family = SCRIPT_COUNTS.get(count)
            if family is not None:
                labels: tuple[str, ...] = (name, label) if label else (name,)
                counts[family, labels] = counts.get((family, labels), 0) + value
        if timed.count:
            durations[name] = durations[name].merged(timed) if name in durations else timed
    for (family, labels), value in counts.items():
        yield Series(family, labels, value)
    for name, found in durations.items():
        yield Series("atomicops_script_duration_seconds", (name,), found)
    for labels, found in observe.lease_waits.snapshot().items():
        yield Series("atomicops_lock_wait_seconds", labels, found)
    for labels, found in observe.lease_holds.snapshot().items():
        yield Series("atomicops_lock_hold_seconds", labels, found)
    for group, allowed in observe.rate_limits:
        family = "atomicops_ratelimit_allowed" if allowed else "atomicops_ratelimit_refused"
        yield Series(family, (group,), observe.rate_limits.get((group, allowed), 0))
    for reason, value in list(observe.idempotency_skips.items()):
        yield Series("atomicops_idempotency_not_stored", (reason,), value)


def _bound(value: float) -> str:
    from prometheus_client.utils import floatToGoString

    return str(floatToGoString(value))  # type: ignore[no-untyped-call, unused-ignore]


class Collector:
    """The families above, made from this process's counts each time it is scraped."""

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

        families: dict[str, Any] = {}
        for name, (kind, text, labels) in FAMILIES.items():
            made = CounterMetricFamily if kind == "counter" else HistogramMetricFamily
            families[name] = made(name, text, labels=labels)
        for found in series():
            family = families[found.family]
            if isinstance(found.value, Buckets):
                cumulative, buckets = 0, []
                for bound, count in found.value.per_bound():
                    cumulative += count
                    buckets.append((_bound(bound), cumulative))
                family.add_metric(found.labels, buckets, found.value.sum)
            else:
                family.add_metric(found.labels, found.value)
        yield from families.values()

    def describe(self) -> Iterator[Any]:
        # Without describe() a registry calls collect() to learn the names at register().
        return iter(())


_collector: Collector | None = None
_collector_lock = threading.Lock()


def register() -> None:
    """Register :class:`Collector` once in prometheus_client's default registry; with
    ``PROMETHEUS_MULTIPROC_DIR`` set, also start this process's snapshots."""
    global _collector
    from prometheus_client import REGISTRY

    with _collector_lock:
        if _collector is None:
            _collector = Collector()
            REGISTRY.register(_collector)
    snapshots.start()


def unregister() -> None:
    """Undo :func:`register` (``PROMETHEUS`` turned off)."""
    global _collector
    with _collector_lock:
        if _collector is not None:
            from prometheus_client import REGISTRY

            REGISTRY.unregister(_collector)
            _collector = None
    snapshots.stop()


# -- several processes ----------------------------------------------------------------

# Seconds between a process's snapshots into PROMETHEUS_MULTIPROC_DIR: what a scrape may
# miss of the other processes (the serving one writes its own first).
SNAPSHOT_INTERVAL = 5.0


class Snapshots:
    """This process's counts, added to prometheus_client's multiprocess files.

    Each :meth:`write` adds what changed since the last one, through prometheus_client's
    own value class for that mode (``prometheus_client.values.ValueClass``, the storage
    its ``Counter`` and ``Histogram`` use: one file per process and type, read and summed
    by ``MultiProcessCollector``). So the files need no reader of ours, a pid reused
    after a restart keeps adding to its file as prometheus_client's metrics do, and a
    forked child starts its own file. A thread writes every :data:`SNAPSHOT_INTERVAL`
    seconds, never on a call's path; the process writes once more at exit.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._written: dict[tuple[str, str, tuple[str, ...]], float] = {}
        self._values: dict[tuple[str, str, tuple[str, ...]], Any] = {}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @staticmethod
    def active() -> bool:
        """Whether this process writes multiprocess files: the directory is set and
        prometheus_client (imported now, if it was not) chose that storage."""
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR") or not available():
            return False
        from prometheus_client import values

        return bool(getattr(values.ValueClass, "_multiprocess", False))

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def write(self) -> int:
        """Add what changed since the last write; returns how many values changed."""
        if not self.active():
            return 0
        with self._lock:
            current = dict(self._samples())
            changed = 0
            for key, value in current.items():
                # Made at its first sight even at 0, as prometheus_client's own histograms
                # make every bucket: MultiProcessCollector exports only what is in a file.
                stored = self._value(key)
                before = self._written.get(key, 0.0)
                # Lower than before: the counts were reset (tests): all of it is new.
                delta = value - before if value >= before else value
                if delta:
                    stored.inc(delta)
                    changed += 1
            self._written = current
            return changed

    def _samples(self) -> Iterator[tuple[tuple[str, str, tuple[str, ...]], float]]:
        # (family, sample name, label values): counters as <family>_total, histograms as
        # one sample per bucket (not cumulative: MultiProcessCollector adds them up, le
        # last among the labels) and <family>_sum, as prometheus_client's own write them.
        for found in series():
            if isinstance(found.value, Buckets):
                for bound, count in found.value.per_bound():
                    yield (found.family, "_bucket", (*found.labels, _bound(bound))), count
                yield (found.family, "_sum", found.labels), found.value.sum
            else:
                yield (found.family, "_total", found.labels), found.value

    def _value(self, key: tuple[str, str, tuple[str, ...]]) -> Any:
        found = self._values.get(key)
        if found is None:
            from prometheus_client import values

            family, suffix, labels = key
            kind, text, names = FAMILIES[family]
            if suffix == "_bucket":
                names = (*names, "le")
            found = self._values[key] = values.ValueClass(
                kind, family, family + suffix, names, labels, text
            )
        return found

    def start(self) -> bool:
        """Start the writing thread unless it runs; False when the mode is off."""
        if not self.active():
            return False
        with self._lock:
            if self.running:
                return True
            self._stop = threading.Event()
            self._thread = threading.Thread(
                target=self._loop,
                args=(self._stop,),
                name="atomicops-metrics-snapshots",
                daemon=True,
            )
            self._thread.start()
        return True

    def stop(self, *, write: bool = True) -> None:
        """Stop the thread (after one last write, by default)."""
        thread, self._thread = self._thread, None
        self._stop.set()
        if thread is not None and thread.is_alive():
            thread.join(10)
        if write and thread is not None:
            self._write_quietly()

    def _loop(self, stop: threading.Event) -> None:
        while not stop.wait(SNAPSHOT_INTERVAL):
            self._write_quietly()

    def _write_quietly(self) -> None:
        try:
            self.write()
        except Exception:  # the thread must survive anything, and say what it was
            logger.exception("atomicops: metrics snapshot not written")

    def _after_fork(self) -> None:
        # What a forked child inherited was counted by its parent, which writes it; the
        # parent's thread (and maybe its lock) did not come along.
        self._lock = threading.Lock()
        was_running, self._thread = self._thread is not None, None
        if was_running:
            self._written = dict(self._samples())
            self.start()

    def _at_exit(self) -> None:
        if self._thread is not None:
            self.stop()


snapshots = Snapshots()
atexit.register(snapshots._at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=snapshots._after_fork)


def metrics_view(request: HttpRequest) -> HttpResponse:
    """The Prometheus text exposition of the default registry, for projects without
    django-prometheus: ``path("metrics", atomicops.metrics_view)``.

    With ``PROMETHEUS_MULTIPROC_DIR`` set it reads every worker's files
    (``MultiProcessCollector``), as django-prometheus does. It serves whoever asks: put
    it behind your own access rule (a network policy, ``staff_member_required``...).
    Answers 501 when prometheus_client is not installed.
    """
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    if not available():
        return HttpResponse(
            'prometheus_client is not installed: pip install "atomicops[metrics]"\n',
            status=501,
            content_type="text/plain",
        )
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import CollectorRegistry, multiprocess

        if snapshots.running:
            snapshots.write()  # this process's counts up to now; the others' as last written
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call, unused-ignore]
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
