"""OpenTelemetry spans for script calls, when ``opentelemetry-api`` is installed.

Each call is a ``CLIENT`` span named ``EVALSHA <script>`` (``EVALSHA_RO`` for read-only
scripts) with ``db.system`` = ``redis``, ``db.operation.name`` and ``atomicops.script``;
a NOSCRIPT recovery is the event ``atomicops.noscript_fallback`` on it; a call that
raised has the status ``ERROR`` and ``error.type`` (the exception's class). Keys and
arguments are not recorded: they may name users. The span's parent is whatever span is
current (the request's, with an instrumented Django).

Without a tracer provider configured (the API alone hands out non-recording spans)
:func:`atomicops.ops.observe.configure` attaches no sink at all, so a call pays nothing
for tracing: :func:`provider_configured` says which, and is asked again at the next
requests until a provider is set.
"""

from __future__ import annotations

import importlib.util
import threading
import time
from typing import Any

__all__ = ["FALLBACK_EVENT", "TracingSink", "available", "default_sink", "provider_configured"]

FALLBACK_EVENT = "atomicops.noscript_fallback"


def available() -> bool:
    """Whether opentelemetry is installed, found without importing anything of it (a
    submodule's spec would import its package): :func:`default_sink` confirms."""
    return importlib.util.find_spec("opentelemetry") is not None


def provider_configured() -> bool:
    """Whether the global tracer provider is a real one: not the API's placeholder (the
    proxy it hands out until ``set_tracer_provider``) nor its no-op provider. Raises
    ImportError without opentelemetry-api."""
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    return not isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider))


class TracingSink:
    """A call sink for :mod:`atomicops.ops.observe` that makes one span per script call."""

    def __init__(self, tracer: Any = None) -> None:
        from opentelemetry import trace
        from opentelemetry.trace import SpanKind, Status, StatusCode

        from atomicops import __version__

        # Without a tracer given, follow the global provider: until an SDK sets one the
        # API hands out non-recording spans, which are skipped (looked at once a second).
        self._global = tracer is None
        self._trace = trace
        self._tracer = tracer or trace.get_tracer("atomicops", __version__)
        self._client = SpanKind.CLIENT
        self._status = Status
        self._error = StatusCode.ERROR
        self._named: dict[tuple[str, bool], tuple[str, dict[str, str]]] = {}
        self._recording = True
        self._looked = -1.0

    def _provider_set(self) -> bool:
        now = time.monotonic()
        if now - self._looked >= 1.0:
            self._looked = now
            self._recording = provider_configured()
        return self._recording

    def start(self, script: Any) -> Any:
        if self._global and not self._provider_set():
            return None
        key = (script.name, script.readonly)
        named = self._named.get(key)
        if named is None:
            operation = "EVALSHA_RO" if script.readonly else "EVALSHA"
            named = self._named[key] = (
                f"{operation} {script.name}",
                {
                    "db.system": "redis",
                    "db.operation.name": operation,
                    "atomicops.script": script.name,
                },
            )
        return self._tracer.start_span(named[0], kind=self._client, attributes=named[1])

    def fallback(self, span: Any) -> None:
        if span is not None:
            span.add_event(FALLBACK_EVENT, {"db.operation.name": "EVAL"})

    def end(self, span: Any, seconds: float, error: Any) -> None:
        if span is None:
            return
        if isinstance(error, Exception):
            name = type(error).__name__
            span.set_attribute("error.type", name)
            span.set_status(self._status(self._error, name))
        span.end()


_default: TracingSink | None = None
_default_lock = threading.Lock()


def default_sink() -> TracingSink:
    """The process's sink on the global tracer provider (the one set now or later)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = TracingSink()
        return _default
