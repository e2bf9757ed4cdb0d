"""Prometheus metrics (``pip install "atomicops[metrics]"``) and a view that serves them.

Every name starts with ``atomicops_``:

=============================================  ================================================
``atomicops_script_calls_total{script}``        script calls started
``atomicops_script_fallbacks_total{script}``    NOSCRIPT recoveries (the call re-sent as EVAL)
``atomicops_script_errors_total{script,error}`` calls that raised, by exception class
``atomicops_script_outcome_unknown_total``      ``{script}``: writes whose reply was lost
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
(:func:`atomicops.observe.lease_prefix`); ``group`` is a ``@rate_limit`` group,
``drf:<scope>`` for a DRF throttle, or the function's name (``fixed_window``...) for
direct calls. Each is bounded to ``observe.LABEL_LIMIT`` distinct values per process
(the rest are ``other``), so ``/metrics`` stays bounded whatever names are used. The metrics live in prometheus_client's default registry, which
django-prometheus' ``/metrics`` exports; they are counters and histograms, so
prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``) sums them across
workers. :func:`metrics_view` serves them where django-prometheus is not installed.

prometheus_client is imported only by :func:`default_sink`, :class:`PrometheusSink` and
:func:`metrics_view`, never when atomicops is imported.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed

from atomicops.exceptions import OutcomeUnknown

__all__ = ["PrometheusSink", "available", "default_sink", "metrics_view"]

# A script call is a round trip or two on a local network: tenths of a millisecond to a
# few; the default buckets (5 ms and up) would put nearly every call in the first one.
SCRIPT_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
)  # fmt: skip
# Waiting for and holding a lease: milliseconds to minutes.
LEASE_BUCKETS = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
    900.0,
)  # fmt: skip


def available() -> bool:
    """Whether prometheus_client is installed (found without importing it)."""
    return importlib.util.find_spec("prometheus_client") is not None


class PrometheusSink:
    """The metrics above, in ``registry`` (default: prometheus_client's ``REGISTRY``).

    A call sink and an event sink for :mod:`atomicops.observe`. Label children are kept
    per script, lease prefix and group, so a call costs no label lookup.
    """

    def __init__(self, registry: Any = None) -> None:
        from prometheus_client import REGISTRY, Counter, Histogram

        registry = REGISTRY if registry is None else registry
        self.calls = Counter(
            "atomicops_script_calls", "Script calls started.", ["script"], registry=registry
        )
        self.fallbacks = Counter(
            "atomicops_script_fallbacks",
            "Script calls that met NOSCRIPT and were sent again with the script's body.",
            ["script"],
            registry=registry,
        )
        self.errors = Counter(
            "atomicops_script_errors",
            "Script calls that raised, by exception class.",
            ["script", "error"],
            registry=registry,
        )
        self.outcome_unknown = Counter(
            "atomicops_script_outcome_unknown",
            "Script calls whose reply was lost after they were sent (OutcomeUnknown).",
            ["script"],
            registry=registry,
        )
        self.duration = Histogram(
            "atomicops_script_duration_seconds",
            "Time of a script call, its round trips included.",
            ["script"],
            buckets=SCRIPT_BUCKETS,
            registry=registry,
        )
        self.lock_wait = Histogram(
            "atomicops_lock_wait_seconds",
            "Time from an acquire's start to the lease granted or given up.",
            ["kind", "prefix", "outcome"],
            buckets=LEASE_BUCKETS,
            registry=registry,
        )
        self.lock_hold = Histogram(
            "atomicops_lock_hold_seconds",
            "Time from a lease granted to its release.",
            ["kind", "prefix"],
            buckets=LEASE_BUCKETS,
            registry=registry,
        )
        self.allowed = Counter(
            "atomicops_ratelimit_allowed",
            "Rate-limit hits let through.",
            ["group"],
            registry=registry,
        )
        self.refused = Counter(
            "atomicops_ratelimit_refused", "Rate-limit hits refused.", ["group"], registry=registry
        )
        self.idempotency_not_stored_total = Counter(
            "atomicops_idempotency_not_stored",
            "@idempotent responses not stored, by reason.",
            ["reason"],
            registry=registry,
        )
        self._scripts: dict[str, tuple[str, Any, Any, Any]] = {}
        self._children: dict[tuple[Any, ...], Any] = {}

    # -- script calls -------------------------------------------------------------

    def start(self, script: Any) -> tuple[str, Any, Any, Any]:
        # (name, calls.inc, fallbacks.inc, duration.observe), bound once per script.
        found = self._scripts.get(script.name)
        if found is None:
            name = script.name
            found = self._scripts[name] = (
                name,
                self.calls.labels(name).inc,
                self.fallbacks.labels(name).inc,
                self.duration.labels(name).observe,
            )
        found[1]()
        return found

    def fallback(self, state: tuple[str, Any, Any, Any]) -> None:
        state[2]()

    def end(self, state: tuple[str, Any, Any, Any], seconds: float, error: Any) -> None:
        if error is None:
            state[3](seconds)
            return
        if not isinstance(error, Exception):
            return  # the flow was closed (a cancelled task): neither done nor failed
        state[3](seconds)
        name = state[0]
        self._child(self.errors, name, type(error).__name__).inc()
        if isinstance(error, OutcomeUnknown):
            self._child(self.outcome_unknown, name).inc()

    # -- leases and rate limits ---------------------------------------------------

    def lease_wait(self, kind: str, prefix: str, seconds: float, acquired: bool) -> None:
        outcome = "acquired" if acquired else "not_acquired"
        self._child(self.lock_wait, kind, prefix, outcome).observe(seconds)

    def lease_hold(self, kind: str, prefix: str, seconds: float) -> None:
        self._child(self.lock_hold, kind, prefix).observe(seconds)

    def rate_limit(self, group: str, allowed: bool) -> None:
        self._child(self.allowed if allowed else self.refused, group).inc()

    def idempotency_not_stored(self, reason: str) -> None:
        self._child(self.idempotency_not_stored_total, reason).inc()

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child


_default: PrometheusSink | None = None
_default_lock = threading.Lock()


def default_sink() -> PrometheusSink:
    """The process's sink on the default registry, made (and registered) once."""
    global _default
    with _default_lock:
        if _default is None:
            _default = PrometheusSink()
        return _default


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

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call, unused-ignore]
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
