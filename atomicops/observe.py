"""Where atomicops is observed: every script call, lease and rate-limit hit passes here.

Three kinds of event, each with one hook point:

* a script call (:data:`watch`, used by :meth:`~atomicops.registry.Script.flow`): its
  start, a NOSCRIPT fallback, its end with the error or None;
* a lease (:func:`lease_waited` from acquire's start to granted or given up,
  :func:`lease_held` from granted to release), for locks and semaphores;
* a rate-limit hit (:func:`rate_limit_hit`), per group.

Sinks are attached by :func:`configure` from the settings, when their package is
installed: Prometheus (:mod:`atomicops.metrics`) and OpenTelemetry
(:mod:`atomicops.tracing`). Without them :data:`watch` is None and the other hooks return
at once, so a call pays one global lookup: nothing of either package is imported.

The per-process counts the dashboard's timeline sums across processes are not sinks:
:class:`~atomicops.registry.ScriptStats` (always counted) and :data:`rate_limits` here.
:mod:`atomicops.timeline` reads them from a background thread, off every call's path.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol, TypeVar

from django.core.signals import setting_changed

from atomicops import planner

__all__ = [
    "OTHER",
    "BoundedLabels",
    "CallSink",
    "EventSink",
    "RateLimitStats",
    "code_label",
    "configure",
    "group_label",
    "idempotency_not_stored",
    "idempotency_skips",
    "lease_held",
    "lease_prefix",
    "lease_waited",
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
    if not _event_sinks:
        return
    seconds = time.monotonic() - started
    prefix = lease_prefix(name)
    for sink in _event_sinks:
        sink.lease_wait(kind, prefix, seconds, acquired)


def lease_held(kind: str, name: str, granted: float | None) -> None:
    """A lease granted at ``granted`` (``time.monotonic()``) is being released."""
    if not _event_sinks or granted is None:
        return
    seconds = time.monotonic() - granted
    prefix = lease_prefix(name)
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
    idempotency_skips[reason] = idempotency_skips.get(reason, 0) + 1
    for sink in _event_sinks:
        report = getattr(sink, "idempotency_not_stored", None)
        if report is not None:
            report(reason)


def attach(call_sinks: tuple[CallSink, ...] = (), event_sinks: tuple[EventSink, ...] = ()) -> None:
    """Report to exactly these sinks from now on (what :func:`configure` and tests use)."""
    global _event_sinks
    calls = tuple(call_sinks)
    # Every script call reports to planner.sink (None: no sink, one check per call).
    planner.sink = None if not calls else calls[0] if len(calls) == 1 else _Fanout(calls)
    _event_sinks = tuple(event_sinks)


def configure() -> None:
    """Attach the sinks the settings ask for and the installed packages allow.

    Called when Django starts and when ``ATOMICOPS`` changes; imports a sink's package
    only when it is installed and its setting is on.
    """
    from atomicops import metrics, tracing
    from atomicops.conf import get_settings

    # New settings, new sinks: the label tables start afresh too (in a project that is
    # once, at start-up; tests that override ATOMICOPS get a table per configuration).
    code_label.reset()
    group_label.reset()
    conf = get_settings()
    calls: list[Any] = []
    events: list[Any] = []
    if conf["PROMETHEUS"] and metrics.available():
        sink = metrics.default_sink()
        calls.append(sink)
        events.append(sink)
    if conf["OPENTELEMETRY"] and tracing.available():
        try:
            calls.append(tracing.default_sink())
        except ImportError:  # an opentelemetry package, but not the API
            pass
    attach(tuple(calls), tuple(events))


def _reconfigure(*, setting: str, **kwargs: Any) -> None:
    if setting == "ATOMICOPS":
        configure()


setting_changed.connect(_reconfigure, dispatch_uid="atomicops.observe.reconfigure")
