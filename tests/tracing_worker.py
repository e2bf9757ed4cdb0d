"""OpenTelemetry's global tracer provider can be set once per process: the tests of when
atomicops finds it run here, in fresh interpreters.

``python -m tests.tracing_worker <url> early|late``: ``early`` sets the provider before
Django starts (configure() attaches the sink at once); ``late`` after, as gunicorn's
``post_fork`` does (the next request finds it). Prints the spans' names.
"""

from __future__ import annotations

import os
import sys


def main(url: str, when: str) -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    if when == "early":
        trace.set_tracer_provider(provider)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django
    from django.conf import settings

    settings.ATOMICOPS = {"URL": url, "LOAD_ON_STARTUP": False, "STATS_FLUSH_INTERVAL": 0}
    django.setup()
    import atomicops
    from atomicops.engine import planner

    if when == "late":
        assert planner.sink is None, "a sink was attached without a tracer provider"
        atomicops.bounded_incr("untraced", limit=5)  # no provider yet: no span
        trace.set_tracer_provider(provider)
        assert planner.sink is None  # not looked for on a call's path
        from django.test import Client

        Client().get("/nowhere")  # any request: its start looks again
    assert planner.sink is not None, "the tracer provider was not found"
    atomicops.bounded_incr("traced", limit=5)
    print(" ".join(span.name for span in exporter.get_finished_spans()))


if __name__ == "__main__":
    main(*sys.argv[1:])
