"""How long a call takes to give up on a server gone for good, per RETRY_DEADLINE_MS.

A server is started, answers one call, and is killed with SIGKILL; then ``bounded_incr``
is called ``BENCH_ROUNDS`` times per deadline (sync and async) and each call's time to
``RedisUnavailable`` and its retries are printed (median, min, max). The figures in
docs/reliability.md ("Riding through") come from here; the scenarios with a server that
comes back are the tests ``tests/faults/test_retry.py``, ``tests/cluster/test_retry.py``
and ``tests/sentinel/test_retry.py`` (run them with ``-s`` to see their figures). Run:
    .venv/bin/python benchmarks/bench_retry.py
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time

from _common import setup_django, start_server

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
DEADLINES_MS = (0, 500, 1500, 2000)


def main() -> None:
    server = start_server()
    setup_django(server.url, atomicops={"SOCKET_CONNECT_TIMEOUT": 0.5})
    from django.test.utils import override_settings

    from atomicops import RedisUnavailable, abounded_incr, bounded_incr, registry

    bounded_incr("bench:retry", 10)
    server.kill()
    stats = registry.get("counter_bounded_incr").stats
    print(f"server gone for good; {ROUNDS} calls per deadline (seconds to RedisUnavailable)")
    for deadline in DEADLINES_MS:
        for mode in ("sync", "async"):
            took, retries = [], []
            with override_settings(
                ATOMICOPS={
                    "URL": server.url,
                    "LOAD_ON_STARTUP": False,
                    "PROMETHEUS": False,
                    "OPENTELEMETRY": False,
                    "STATS_FLUSH_INTERVAL": 0,
                    "SOCKET_CONNECT_TIMEOUT": 0.5,
                    "RETRY_DEADLINE_MS": deadline,
                }
            ):
                for _ in range(ROUNDS):
                    before = stats["retries"]
                    started = time.monotonic()
                    try:
                        if mode == "sync":
                            bounded_incr("bench:retry", 10)
                        else:
                            asyncio.run(abounded_incr("bench:retry", 10))
                    except RedisUnavailable:
                        pass
                    else:
                        raise SystemExit("a call to a killed server answered")
                    took.append(time.monotonic() - started)
                    retries.append(stats["retries"] - before)
            print(
                f"  RETRY_DEADLINE_MS={deadline:<5} {mode:5}: median {statistics.median(took):.3f}"
                f" s (min {min(took):.3f}, max {max(took):.3f}); retries per call "
                f"{min(retries)}-{max(retries)}"
            )


if __name__ == "__main__":
    main()
