"""Where atomicops is observed: every script call, lease and rate-limit hit passes here.

Everything is first counted per process, in plain numbers under a lock, and read by
whoever exports it, off every call's path:

* script calls: :class:`~atomicops.scripts.registry.ScriptStats` (calls, fallbacks,
  errors by class, unknown outcomes; durations while Prometheus metrics are on,
  ``engine.planner.timed``);
* leases: :data:`lease_waits` and :data:`lease_holds` (while metrics are on), from
  :func:`lease_waited` (acquire's start to granted or given up) and :func:`lease_held`
  (granted to release);
* rate-limit hits: :data:`rate_limits` (always), from :func:`rate_limit_hit`;
  ``@idempotent`` responses not stored: :data:`idempotency_skips` (always).

The Prometheus collector (:mod:`atomicops.ops.metrics`) reads them when it is scraped;
the dashboard's timeline (:mod:`atomicops.ops.timeline`) from its thread.

Sinks are for what must see each event as it happens: a call sink
(``engine.planner.sink``: start, NOSCRIPT fallback, end) and event sinks (leases, rate
limits). :func:`configure` attaches OpenTelemetry's (:mod:`atomicops.ops.tracing`) only
when a tracer provider is configured; :func:`attach` takes anyone's own. Without a call
sink a call pays one ``is None`` test.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol, TypeVar

from django.core.signals import request_started, setting_changed

from atomicops.engine import planner
from atomicops.engine.tally import Timings

__all__ = [
    "OTHER",
    "BoundedLabels",
    "LEASE_BUCKETS",
    "CallSink",
    "EventSink",
    "RateLimitStats",
    "code_label",
    "configure",
    "group_label",
    "idempotency_not_stored",
    "idempotency_skips",
    "lease_held",
    "lease_holds",
    "lease_prefix",
    "lease_waited",
    "lease_waits",
    "rate_limit_hit",
    "rate_limits",
]


class _Decided(Protocol):
    allowed: bool


R = TypeVar("R", bound=_Decided)


class CallSink(Protocol):
    """Receives the script calls: ``start`` returns what ``fallback`` and ``end`` get."""

    def start(self, script: Any) -> Any: ...

    def fallback(self, state: Any) -> None: ...

    def end(self, state: Any, seconds: float, error: BaseException | None) -> None: ...


class EventSink(Protocol):
    """Receives lease waits and holds and rate-limit hits (seconds are durations)."""

    def lease_wait(self, kind: str, prefix: str, seconds: float, acquired: bool) -> None: ...

    def lease_hold(self, kind: str, prefix: str, seconds: float) -> None: ...

    def rate_limit(self, group: str, allowed: bool) -> None: ...

    # Optional: a sink without it is not told (sinks written before it existed).
    # def idempotency_not_stored(self, reason: str) -> None: ...


class RateLimitStats(Mapping[tuple[str, bool], int]):
    """Per-process counts of rate-limit hits: ``(group, allowed) -> hits``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, bool], int] = {}

    def bump(self, group: str, allowed: bool) -> None:
        with self._lock:
            self._counts[group, allowed] = self._counts.get((group, allowed), 0) + 1

    def reset(self) -> None:
        with self._lock:
            self._counts = {}

    def __getitem__(self, item: tuple[str, bool]) -> int:
        return self._counts[item]

    def __iter__(self) -> Iterator[tuple[str, bool]]:
        return iter(list(self._counts))

    def __len__(self) -> int:
        return len(self._counts)


rate_limits = RateLimitStats()
# Per-process counts of @idempotent responses not stored, by reason ("client_bound").
idempotency_skips: dict[str, int] = {}
_skips_lock = threading.Lock()
# Waiting for and holding a lease: milliseconds to minutes.
LEASE_BUCKETS = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
    900.0,
)  # fmt: skip
# Per-process lease timings while metrics are on: (kind, prefix, outcome) and (kind, prefix).
lease_waits = Timings(LEASE_BUCKETS)
lease_holds = Timings(LEASE_BUCKETS)


# -- labels: never user-chosen text --------------------------------------------------

OTHER = "other"
# A lease label is the part of its name before the first ":", written only when it looks
# like an identifier a programmer chose: lower-case ASCII letters, digits and "_",
# starting with a letter, at most 32 characters, once optionally followed by "." and
# another such word (an (instance, name) pair's "shop.order"), with at most 3 digits in
# all. That turns away e-mail addresses ("@"), API keys and tokens (upper case, "-",
# long, digit-heavy), numbers and ids ("42"). Anything else is counted as "other".
_CODE_LABEL = re.compile(r"[a-z][a-z0-9_]{0,31}(?:\.[a-z][a-z0-9_]{0,31})?\Z")
CODE_LABEL_DIGITS = 3
# Rate-limit groups are chosen in code (group=, a DRF scope, the default
# "<module>.<qualname>#<hash>"): a looser rule, still no "@" or spaces, and bounded.
_GROUP_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_.:#|<>-]{0,127}\Z")
# Distinct values one process writes per label; past it everything new is "other", so a
# label's series stay bounded whatever names the code is given. Groups come from code
# only (one per rate-limited view by default), so a project may have more of them.
LABEL_LIMIT = 64
GROUP_LABEL_LIMIT = 256


class BoundedLabels:
    """The label values one process hands out for one kind of name: at most ``limit``
    distinct values that pass ``accept``, then :data:`OTHER` for every new one."""

    def __init__(self, accept: Callable[[str], bool], limit: int = LABEL_LIMIT) -> None:
        self._accept = accept
        self._limit = limit
        self._given: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, text: str) -> str:
        if text in self._given:  # the hot path: a label already handed out
            return text
        if not self._accept(text):
            return OTHER
        with self._lock:
            if len(self._given) >= self._limit:
                return OTHER
            self._given.add(text)
        return text

    def reset(self) -> None:
        with self._lock:
            self._given = set()


def _looks_like_code(text: str) -> bool:
    return (
        _CODE_LABEL.match(text) is not None and sum(c.isdigit() for c in text) <= CODE_LABEL_DIGITS
    )


code_label = BoundedLabels(_looks_like_code)
group_label = BoundedLabels(lambda text: _GROUP_LABEL.match(text) is not None, GROUP_LABEL_LIMIT)

_event_sinks: tuple[EventSink, ...] = ()


class _Fanout:
    """Several call sinks as one (one sink is used as it is: no loop per call)."""

    def __init__(self, sinks: tuple[CallSink, ...]) -> None:
        self.sinks = sinks

    def start(self, script: Any) -> list[Any]:
        return [sink.start(script) for sink in self.sinks]

    def fallback(self, states: list[Any]) -> None:
        for sink, state in zip(self.sinks, states, strict=True):
            sink.fallback(state)

    def end(self, states: list[Any], seconds: float, error: BaseException | None) -> None:
        for sink, state in zip(self.sinks, states, strict=True):
            sink.end(state, seconds, error)


def lease_prefix(name: str) -> str:
    """What a lease's metrics are labelled with: its name up to the first ``:``, when
    that looks like an identifier chosen by code (:data:`code_label`), else ``other``.

    ``"order:42"`` -> ``"order"``; an ``(instance, name)`` pair's ``"shop.order:42:pay"``
    -> ``"shop.order"``; ``"alice@example.com"`` -> ``"other"``. Per name would give
    every order its own time series, and put users' text in the metrics.
    """
    return code_label(str(name).partition(":")[0])


def lease_waited(kind: str, name: str, started: float, acquired: bool) -> None:
    """An acquire that began at ``started`` (``time.monotonic()``) was granted or not."""
    if not (_event_sinks or planner.timed):
        return
    seconds = time.monotonic() - started
    prefix = lease_prefix(name)
    if planner.timed:
        lease_waits.add((kind, prefix, "acquired" if acquired else "not_acquired"), seconds)
    for sink in _event_sinks:
        sink.lease_wait(kind, prefix, seconds, acquired)


def lease_held(kind: str, name: str, granted: float | None) -> None:
    """A lease granted at ``granted`` (``time.monotonic()``) is being released."""
    if not (_event_sinks or planner.timed) or granted is None:
        return
    seconds = time.monotonic() - granted
    prefix = lease_prefix(name)
    if planner.timed:
        lease_holds.add((kind, prefix), seconds)
    for sink in _event_sinks:
        sink.lease_hold(kind, prefix, seconds)


def rate_limit_hit(group: str, result: R) -> R:
    """Count a rate-limit result under ``group``; returns ``result``."""
    allowed = bool(result.allowed)
    group = group_label(group)
    rate_limits.bump(group, allowed)
    for sink in _event_sinks:
        sink.rate_limit(group, allowed)
    return result


def idempotency_not_stored(reason: str) -> None:
    """An @idempotent response was not stored for ``reason`` (a fixed word)."""
    with _skips_lock:
        idempotency_skips[reason] = idempotency_skips.get(reason, 0) + 1
    for sink in _event_sinks:
        report = getattr(sink, "idempotency_not_stored", None)
        if report is not None:
            report(reason)


_call_sinks: tuple[CallSink, ...] = ()


def attach(call_sinks: tuple[CallSink, ...] = (), event_sinks: tuple[EventSink, ...] = ()) -> None:
    """Report to exactly these sinks from now on (what :func:`configure` and tests use).

    The per-process counts (and Prometheus' durations, :func:`configure`) go on whatever
    is attached here.
    """
    global _event_sinks, _call_sinks
    calls = _call_sinks = tuple(call_sinks)
    # Every script call reports to planner.sink (None: no sink, one check per call).
    planner.sink = None if not calls else calls[0] if len(calls) == 1 else _Fanout(calls)
    _event_sinks = tuple(event_sinks)


def configure() -> None:
    """Turn on what the settings ask for and the installed packages allow.

    Called when Django starts and when ``ATOMICOPS`` changes; imports a package only when
    it is installed and its setting is on. Prometheus: calls are timed, the collector is
    registered (and, with ``PROMETHEUS_MULTIPROC_DIR``, this process's snapshots written):
    no sink. OpenTelemetry: its call sink, only when a tracer provider is configured; if
    none is yet, it is looked for again at the next requests (at most once a second) until
    one is. A process without requests (a Celery worker) that sets its provider after
    Django started calls this function again.
    """
    from atomicops.conf import get_settings
    from atomicops.ops import metrics, tracing

    # New settings, new sinks: the label tables start afresh too (in a project that is
    # once, at start-up; tests that override ATOMICOPS get a table per configuration).
    code_label.reset()
    group_label.reset()
    conf = get_settings()
    on = bool(conf["PROMETHEUS"]) and metrics.available()
    planner.timed = on
    if on:
        metrics.register()
    else:
        metrics.unregister()
    calls: list[Any] = []
    request_started.disconnect(dispatch_uid=_LOOK_UID)
    if conf["OPENTELEMETRY"] and tracing.available():
        try:
            if tracing.provider_configured():
                calls.append(tracing.default_sink())
            else:
                request_started.connect(_look_for_tracer, dispatch_uid=_LOOK_UID, weak=False)
        except ImportError:  # an opentelemetry package, but not the API
            pass
    attach(tuple(calls), ())


_LOOK_UID = "atomicops.ops.observe.look_for_tracer"
_looked = [-1.0]


def _look_for_tracer(sender: object, **kwargs: object) -> None:
    """At a request's start, at most once a second: has a tracer provider been set since
    (gunicorn's ``post_fork``, a late ``set_tracer_provider``)? Then spans from now on."""
    now = time.monotonic()
    if now - _looked[0] < 1.0:
        return
    _looked[0] = now
    from atomicops.ops import tracing

    if tracing.provider_configured():
        request_started.disconnect(dispatch_uid=_LOOK_UID)
        attach((*_call_sinks, tracing.default_sink()), _event_sinks)


def _reconfigure(*, setting: str, **kwargs: Any) -> None:
    if setting == "ATOMICOPS":
        configure()


setting_changed.connect(_reconfigure, dispatch_uid="atomicops.ops.observe.reconfigure")
