"""Shared set-up for benchmarks: Django configured, one redis-server started for the run."""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def setup_django(redis_url: str | None, *, atomicops: dict | None = None, **extra) -> None:
    """Django configured for one benchmark; ``atomicops``: settings over the defaults here
    (``{"REST_URL": ..., "REST_TOKEN": ...}`` with ``redis_url=None`` for the REST one)."""
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "atomicops"],
            DATABASES=extra.pop(
                "DATABASES",
                {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
            ),
            # The anchors record nothing: metrics, spans and the dashboard's timeline are off
            # here (bench_metrics.py measures what they cost), even when prometheus_client
            # or opentelemetry-api are installed, as they are in the test extra.
            ATOMICOPS={
                "URL": redis_url,
                "LOAD_ON_STARTUP": False,
                "PROMETHEUS": False,
                "OPENTELEMETRY": False,
                "STATS_FLUSH_INTERVAL": 0,
                **(atomicops or {}),
            },
            USE_TZ=True,
            **extra,
        )
        django.setup()


def start_server():
    from tests.servers import Server, redis_server_binary

    binary = os.environ.get("BENCH_SERVER_BINARY") or redis_server_binary()
    if not binary:
        raise SystemExit("redis-server not found on PATH")
    return Server("bench", binary).start()


def rate(fn: Callable[[], object], n: int) -> float:
    """Calls per second of ``fn`` over ``n`` calls."""
    started = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - started)


def compare_rounds(
    contenders: dict[str, Callable[[], object]], n: int, rounds: int = 5
) -> dict[str, list[float]]:
    """Interleave rounds of every contender (so machine noise hits all alike); name ->
    its rate in each round."""
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    for fn in contenders.values():
        fn()  # warm up: connections, caches
    for _ in range(rounds):
        for name, fn in contenders.items():
            rates[name].append(rate(fn, n))
    return rates


def compare(
    contenders: dict[str, Callable[[], object]], n: int, rounds: int = 5
) -> dict[str, float]:
    """:func:`compare_rounds`, as each contender's median rate."""
    rates = compare_rounds(contenders, n, rounds)
    return {name: statistics.median(values) for name, values in rates.items()}


def paired(a: list[float], b: list[float]) -> float:
    """Median over rounds of a / b, each pair measured back to back.

    Steadier than a ratio of medians when the machine's speed drifts between rounds.
    """
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def report(title: str, rates: dict[str, float], anchor: str) -> None:
    print(f"\n{title}")
    base = rates[anchor]
    for name, value in rates.items():
        print(f"  {name:<40} {value:>10,.0f}/s   ratio vs {anchor}: {value / base:.3f}")
