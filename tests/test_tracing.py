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
