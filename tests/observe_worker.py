"""A known sequence of atomicops calls, and the metrics it must produce.

Run in the test process (tests/test_metrics.py) and, for prometheus_client's
multiprocess mode, in fresh interpreters: ``python -m tests.observe_worker <url> <tag>
[flush]`` sets Django up on ``tests.settings`` pointed at ``url`` and runs the sequence
(PROMETHEUS_MULTIPROC_DIR must be in the environment before prometheus_client loads);
``python -m tests.observe_worker <url> forked <children>`` runs :func:`forked`.
"""

from __future__ import annotations

import os
import sys

# (metric sample name, labels, value) after one run of known_sequence with the flush.
EXPECTED = [
    ("atomicops_script_calls_total", {"script": "counter_bounded_incr"}, 4),
    ("atomicops_script_fallbacks_total", {"script": "counter_bounded_incr"}, 1),
    ("atomicops_script_duration_seconds_count", {"script": "counter_bounded_incr"}, 4),
    ("atomicops_script_calls_total", {"script": "counter_incr"}, 1),
    ("atomicops_script_errors_total", {"script": "counter_incr", "error": "DataError"}, 1),
    ("atomicops_script_duration_seconds_count", {"script": "counter_incr"}, 1),
    ("atomicops_script_calls_total", {"script": "ratelimit_fixed_window"}, 3),
    ("atomicops_ratelimit_allowed_total", {"group": "fixed_window"}, 2),
    ("atomicops_ratelimit_refused_total", {"group": "fixed_window"}, 1),
    ("atomicops_script_calls_total", {"script": "lock_acquire"}, 2),
    ("atomicops_script_calls_total", {"script": "lock_release"}, 1),
    (
        "atomicops_lock_wait_seconds_count",
        {"kind": "lock", "prefix": "order", "outcome": "acquired"},
        1,
    ),
    (
        "atomicops_lock_wait_seconds_count",
        {"kind": "lock", "prefix": "order", "outcome": "not_acquired"},
        1,
    ),
    ("atomicops_lock_hold_seconds_count", {"kind": "lock", "prefix": "order"}, 1),
]
# Nothing else may have happened (a series at 0 is allowed: fallbacks start at 0).
ABSENT = [
    ("atomicops_script_fallbacks_total", {"script": "counter_incr"}),
    ("atomicops_script_errors_total", {"script": "counter_bounded_incr", "error": "DataError"}),
    ("atomicops_script_outcome_unknown_total", {"script": "counter_incr"}),
]


class Scraped:
    """A registry's samples now, and what changed by the time :meth:`get_sample_value`
    is asked (the collector exports per-process totals, which earlier tests moved)."""

    def __init__(self, registry=None) -> None:
        if registry is None:
            from prometheus_client import REGISTRY as registry
        self.registry = registry
        self.before = self.read()

    def read(self) -> dict:
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in self.registry.collect()
            for sample in family.samples
        }

    def get_sample_value(self, name: str, labels: dict) -> float:
        key = (name, tuple(sorted(labels.items())))
        return self.read().get(key, 0) - self.before.get(key, 0)


def known_sequence(client, tag: str, *, flush: bool = True) -> None:
    """3 bounded increments, a SCRIPT FLUSH, one more (its fallback), a typed error, a
    fixed window with 2 hits allowed and 1 refused, a lock held once and refused once."""
    import atomicops
    from atomicops.exceptions import DataError

    for _ in range(3):
        atomicops.bounded_incr(f"{tag}:n", limit=100, client=client)
    if flush:
        client.script_flush()
    atomicops.bounded_incr(f"{tag}:n", limit=100, client=client)
    client.set(f"{tag}:text", "not a number")
    try:
        atomicops.incr(f"{tag}:text", client=client)
    except DataError:
        pass
    else:  # pragma: no cover
        raise AssertionError("incr on text did not raise DataError")
    for _ in range(3):
        atomicops.fixed_window(f"{tag}:rl", limit=2, window_ms=60_000, client=client)
    lock = atomicops.Lock(f"order:{tag}", ttl=5, client=client)
    assert lock.acquire(blocking=False)
    assert not atomicops.Lock(f"order:{tag}", ttl=5, client=client).acquire(blocking=False)
    lock.release()


def _setup(url: str) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django
    from django.conf import settings

    settings.ATOMICOPS = {"URL": url, "LOAD_ON_STARTUP": False, "STATS_FLUSH_INTERVAL": 0}
    django.setup()


# What each forked child of forked() does, and the totals the files must then hold.
CHILD_CALLS = 30
MASTER_CALLS = 5
MASTER_UNWRITTEN = 3


def _child(index: int) -> int:
    import time

    import atomicops

    for _ in range(CHILD_CALLS):
        atomicops.bounded_incr(f"child{index}:n", limit=10_000)
    for _ in range(3):
        atomicops.fixed_window(f"child{index}:rl", limit=2, window_ms=60_000)
    with atomicops.Lock(f"order:{index}", ttl=5):
        pass
    # A forked child leaves by os._exit (no atexit): its thread writes its snapshot.
    from atomicops.ops import metrics

    time.sleep(metrics.SNAPSHOT_INTERVAL * 5)
    return os.getpid()


def forked(url: str, children: str) -> None:
    """A pre-forking server in small: calls in this process (the master), proof that they
    reach the files only when a snapshot is written, more calls not yet written, then
    ``children`` forked processes calling at once, each with the thread it inherits
    restarted."""
    from prometheus_client import CollectorRegistry, multiprocess

    _setup(url)
    import atomicops
    from atomicops.ops import metrics
    from tests.multiproc import run_processes

    def calls_in_files() -> float | None:
        read = CollectorRegistry()
        multiprocess.MultiProcessCollector(read)
        name = "atomicops_script_calls_total"
        return read.get_sample_value(name, {"script": "counter_bounded_incr"})

    assert metrics.snapshots.running, "configure() did not start the snapshots"
    metrics.snapshots.stop(write=False)  # no thread: only write() may touch the files
    for _ in range(MASTER_CALLS):
        atomicops.bounded_incr("master:n", limit=10_000)
    assert calls_in_files() is None, "a call wrote to the multiprocess files"
    assert metrics.snapshots.write() > 0
    assert calls_in_files() == MASTER_CALLS
    # More calls the master has not written when it forks (its thread waits a minute; it
    # writes them at exit): the children inherit them and must not write them too.
    metrics.SNAPSHOT_INTERVAL = 60.0
    assert metrics.snapshots.start()
    for _ in range(MASTER_UNWRITTEN):
        atomicops.bounded_incr("master:n", limit=10_000)
    metrics.SNAPSHOT_INTERVAL = 0.1  # the children's threads
    run_processes(_child, [(i,) for i in range(int(children))])


def main(url: str, tag: str, flush: str = "flush") -> None:
    if tag == "forked":
        forked(url, flush)
        return
    _setup(url)
    import redis

    client = redis.Redis.from_url(url)
    known_sequence(client, tag, flush=flush == "flush")
    client.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
