"""OpenTelemetry spans (atomicops.ops.tracing), read back with the SDK's in-memory exporter."""

from __future__ import annotations

import pytest

import atomicops
from atomicops.exceptions import DataError
from atomicops.ops import observe, tracing

sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, StatusCode  # noqa: E402


@pytest.fixture
def spans():
    """Every span a script call makes in the test, finished, in order."""
    exporter = InMemorySpanExporter()
    provider = sdk_trace.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    observe.attach((tracing.TracingSink(provider.get_tracer("atomicops")),))
    yield exporter
    observe.configure()
    provider.shutdown()


def test_a_call_is_a_client_span_with_the_script_and_operation(backend, spans):
    kind, client = backend
    atomicops.bounded_incr("traced", limit=5, client=client)
    [span] = spans.get_finished_spans()
    assert span.name == "EVALSHA counter_bounded_incr"
    assert span.kind is SpanKind.CLIENT
    assert dict(span.attributes) == {
        "db.system": "redis",
        "db.operation.name": "EVALSHA",
        "atomicops.script": "counter_bounded_incr",
    }
    assert span.events == ()
    assert span.status.status_code is StatusCode.UNSET


def test_a_noscript_recovery_is_an_event_on_the_span(backend, spans):
    kind, client = backend
    atomicops.bounded_incr("traced", limit=5, client=client)
    client.script_flush()
    atomicops.bounded_incr("traced", limit=5, client=client)
    first, second = spans.get_finished_spans()
    assert first.events == ()
    [event] = second.events
    assert event.name == tracing.FALLBACK_EVENT
    assert dict(event.attributes) == {"db.operation.name": "EVAL"}
    assert second.status.status_code is StatusCode.UNSET


def test_an_error_sets_the_status_and_type(backend, spans):
    kind, client = backend
    client.set("text", "abc")
    with pytest.raises(DataError):
        atomicops.incr("text", client=client)
    [span] = spans.get_finished_spans()
    assert span.name == "EVALSHA counter_incr"
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "DataError"
    assert span.attributes["error.type"] == "DataError"


def test_a_read_only_script_is_evalsha_ro(backend, spans):
    kind, client = backend
    atomicops.get_counter("ro", client=client)
    [span] = spans.get_finished_spans()
    assert span.name == "EVALSHA_RO counter_get"
    assert span.attributes["db.operation.name"] == "EVALSHA_RO"


async def test_async_calls_are_spans_too(backend, spans):
    kind, client = backend
    await atomicops.abounded_incr("traced-async", limit=5)
    [span] = spans.get_finished_spans()
    assert span.name == "EVALSHA counter_bounded_incr"


def test_the_span_is_a_child_of_the_current_one(backend, spans):
    kind, client = backend
    tracer = sdk_trace.TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("request") as parent:
        atomicops.bounded_incr("child", limit=5, client=client)
    [span] = spans.get_finished_spans()
    assert span.parent is not None
    assert span.parent.span_id == parent.get_span_context().span_id


def test_without_an_sdk_no_span_is_made(backend):
    """The API alone hands out non-recording spans: the sink skips them altogether."""
    from opentelemetry import trace

    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        pytest.skip("a global tracer provider was set in this process")
    sink = tracing.TracingSink()
    observe.attach((sink,))
    try:
        atomicops.bounded_incr("untraced", limit=5, client=backend[1])
        assert sink.start(atomicops.registry.get("counter_bounded_incr")) is None
    finally:
        observe.configure()


def test_without_a_tracer_provider_no_call_sink_is_attached(monkeypatch):
    """opentelemetry-api installed, no provider set: configure() attaches nothing, so a
    call pays nothing for tracing; a request's start looks again, at most once a second
    (the receiver called here; a real request in the test below)."""
    from opentelemetry import trace

    from atomicops.engine import planner

    if tracing.provider_configured():
        pytest.skip("a global tracer provider was set in this process")
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    monkeypatch.setattr(observe, "_looked", [-1.0])
    try:
        observe.configure()
        assert planner.sink is None
        observe._look_for_tracer(sender=None)
        assert planner.sink is None  # looked: still none
        monkeypatch.setattr(tracing, "provider_configured", lambda: True)
        observe._look_for_tracer(sender=None)
        assert planner.sink is None  # not looked again within the second
        observe._looked[0] = -1.0
        observe._look_for_tracer(sender=None)
        assert isinstance(planner.sink, tracing.TracingSink)  # found: spans from now on
    finally:
        monkeypatch.undo()
        observe.configure()
    assert planner.sink is None


@pytest.mark.parametrize("when", ["early", "late"])
@pytest.mark.parametrize("real_server", ["redis"], indirect=True)
def test_a_configured_provider_is_found_before_or_after_django_starts(real_server, when):
    """Fresh interpreters (the global provider is set once per process): set before
    Django starts, configure() attaches the sink; set after (gunicorn's post_fork), the
    next request's start finds it. Either way the calls after it are spans, and the
    ones before it are not."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    out = subprocess.run(
        [sys.executable, "-m", "tests.tracing_worker", real_server.url, when],
        cwd=Path(__file__).resolve().parent.parent,
        env={k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[-2] == "EVALSHA counter_bounded_incr"
