"""Prometheus metrics (atomicops.metrics): exact values after a known sequence of calls,
in one process and in prometheus_client's multiprocess mode, and the view serving them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from atomicops import metrics, observe, planner
from atomicops.exceptions import OutcomeUnknown
from tests.observe_worker import ABSENT, EXPECTED, known_sequence

prometheus_client = pytest.importorskip("prometheus_client")

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def sink():
    """A PrometheusSink on a private registry, the only sink attached for the test."""
    registry = prometheus_client.CollectorRegistry()
    sink = metrics.PrometheusSink(registry)
    observe.attach((sink,), (sink,))
    yield registry
    observe.configure()


def test_a_known_sequence_gives_exactly_the_expected_samples(backend, sink):
    kind, client = backend
    known_sequence(client, "single")
    for name, labels, value in EXPECTED:
        assert sink.get_sample_value(name, labels) == value, (name, labels)
    for name, labels in ABSENT:
        assert not sink.get_sample_value(name, labels), (name, labels)  # absent or 0
    total = sink.get_sample_value(
        "atomicops_script_duration_seconds_sum", {"script": "counter_bounded_incr"}
    )
    assert 0 < total < 5


@pytest.mark.parametrize("real_server", ["redis"], indirect=True)
def test_outcome_unknown_is_counted_by_script(real_server, sink, fresh_registry):
    import redis

    # Keeps the server busy past the client's socket timeout, then writes.
    slow = fresh_registry.register(
        "slow_write",
        "local t = redis.call('TIME') local stop = t[1] * 1e6 + t[2] + 300000 "
        "repeat t = redis.call('TIME') until t[1] * 1e6 + t[2] >= stop "
        "return redis.call('INCR', KEYS[1])",
        keys=["k"],
    )
    client = redis.Redis(port=real_server.port, socket_timeout=0.1)
    with pytest.raises(OutcomeUnknown):
        slow(["n"], client=client)
    client.close()
    labels = {"script": "slow_write"}
    assert sink.get_sample_value("atomicops_script_outcome_unknown_total", labels) == 1
    assert (
        sink.get_sample_value(
            "atomicops_script_errors_total", {**labels, "error": "OutcomeUnknown"}
        )
        == 1
    )
    assert sink.get_sample_value("atomicops_script_duration_seconds_count", labels) == 1


def test_without_sinks_a_call_is_not_wrapped(backend):
    import atomicops

    observe.attach()
    try:
        assert planner.sink is None
        atomicops.bounded_incr("plain", limit=3, client=backend[1])
    finally:
        observe.configure()
    assert planner.sink is not None  # prometheus_client is installed here


def test_settings_turn_the_sinks_off(settings):
    settings.ATOMICOPS = {"PROMETHEUS": False, "OPENTELEMETRY": False}
    assert planner.sink is None
    settings.ATOMICOPS = {"PROMETHEUS": True, "OPENTELEMETRY": False}
    assert planner.sink is not None


def test_the_default_sink_registers_in_the_default_registry(backend):
    """What django-prometheus' /metrics exports: prometheus_client's REGISTRY."""
    import atomicops

    before = prometheus_client.REGISTRY.get_sample_value(
        "atomicops_script_calls_total", {"script": "counter_bounded_incr"}
    )
    atomicops.bounded_incr("registered", limit=3, client=backend[1])
    after = prometheus_client.REGISTRY.get_sample_value(
        "atomicops_script_calls_total", {"script": "counter_bounded_incr"}
    )
    assert after == (before or 0) + 1


def test_metrics_view_serves_the_exposition(backend, rf):
    import atomicops

    atomicops.bounded_incr("viewed", limit=3, client=backend[1])
    response = atomicops.metrics_view(rf.get("/metrics"))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    body = response.content.decode()
    assert 'atomicops_script_calls_total{script="counter_bounded_incr"}' in body
    assert "# TYPE atomicops_script_duration_seconds histogram" in body
    assert atomicops.metrics_view(rf.post("/metrics")).status_code == 405


def test_metrics_view_without_prometheus_client(rf, monkeypatch):
    monkeypatch.setattr(metrics, "available", lambda: False)
    response = metrics.metrics_view(rf.get("/metrics"))
    assert response.status_code == 501
    assert b"atomicops[metrics]" in response.content


def test_importing_atomicops_imports_neither_package():
    """(redis-py itself imports parts of opentelemetry when it is installed: only what
    atomicops adds counts.)"""
    code = (
        "import sys, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'tests.settings'; "
        "import redis, django; before = set(sys.modules); "
        "import atomicops, atomicops.metrics, atomicops.tracing, atomicops.observe; "
        "print(sorted(m for m in set(sys.modules) - before "
        "if m.startswith(('prometheus', 'opentelemetry'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
@pytest.mark.parametrize("real_server", ["redis"], indirect=True)
def test_multiprocess_mode_sums_every_process(real_server, tmp_path):
    """Two fresh interpreters with PROMETHEUS_MULTIPROC_DIR run the sequence (one after
    the other, so only the first one's SCRIPT FLUSH forces a fallback); the parent reads
    their files with MultiProcessCollector, as django-prometheus or metrics_view would."""
    from prometheus_client import CollectorRegistry, multiprocess

    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for tag, flush in (("worker-a", "flush"), ("worker-b", "no-flush")):
        subprocess.run(
            [sys.executable, "-m", "tests.observe_worker", real_server.url, tag, flush],
            cwd=ROOT,
            env=env,
            check=True,
            timeout=60,
        )
    assert len(list(tmp_path.glob("counter_*.db"))) == 2  # one file per process
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(tmp_path))
    for name, labels, value in EXPECTED:
        expected = value * 2
        if name == "atomicops_script_fallbacks_total":
            expected = value  # the second worker flushed nothing: no fallback
        assert registry.get_sample_value(name, labels) == expected, (name, labels)
    for name, labels in ABSENT:
        assert not registry.get_sample_value(name, labels), (name, labels)


def test_every_lock_kind_reports_its_waits_and_holds(backend, sink):
    from atomicops import FairLock, Lock, MultiLock, ReadWriteLock

    rw = ReadWriteLock("doc:1", ttl=10)
    with FairLock("fair:1", ttl=10), rw.read(), MultiLock(["acct:1", "acct:2"], ttl=10):
        pass
    with rw.write(), Lock("re:1", ttl=10, reentrant=True) as reentrant, reentrant:
        pass
    for kind, prefix, waits, holds in [
        ("fairlock", "fair", 1, 1),
        ("rwlock_read", "doc", 1, 1),
        ("rwlock_write", "doc", 1, 1),
        ("multilock", "acct", 1, 1),  # once for the whole, not per name or slot group
        ("lock", "re", 2, 1),  # a nested acquire is an acquire; one hold, to the last release
    ]:
        labels = {"kind": kind, "prefix": prefix}
        counted = (
            sink.get_sample_value(
                "atomicops_lock_wait_seconds_count", {**labels, "outcome": "acquired"}
            ),
            sink.get_sample_value("atomicops_lock_hold_seconds_count", labels),
        )
        assert counted == (waits, holds), (kind, counted)
