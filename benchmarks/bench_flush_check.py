"""What the operator tools cost on one redis-server: flush check, dashboard data, load_all.

No anchor is named for these tools, so the ratios are against ``registry.load_all()``
(one round trip that SCRIPT LOADs everything), the cheapest useful operation. Run:
    .venv/bin/python benchmarks/bench_flush_check.py
"""

from __future__ import annotations

import os
import statistics
import time

from _common import setup_django, start_server

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "30"))


def median_ms(fn) -> float:
    fn()  # warm up
    samples = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def main() -> None:
    server = start_server()
    try:
        setup_django(server.url)
        import redis

        from atomicops.ops.dashboard import collect
        from atomicops.ops.flushcheck import flush_check
        from atomicops.scripts.registry import registry

        client = redis.Redis(port=server.port)
        for i in range(50):  # a few locks for the dashboard's SCAN to find
            client.hset(f"atomicops:lock:{{bench{i}}}", mapping={"owner": "o", "token": i})
            client.pexpire(f"atomicops:lock:{{bench{i}}}", 60_000)
        results = {
            "load_all (anchor)": median_ms(lambda: registry.load_all(client)),
            "dashboard data (collect)": median_ms(lambda: collect(client)),
            "flush_check(flush=False)": median_ms(lambda: flush_check(client=client, flush=False)),
            "flush_check()": median_ms(lambda: flush_check(client=client)),
        }
        rows = flush_check(client=client)
        assert all(row.result == "recovered" for row in rows), rows
        anchor = results["load_all (anchor)"]
        print(
            f"server {server.name} {server.version()}, {len(registry)} scripts, "
            f"median of {ROUNDS} runs each"
        )
        for name, value in results.items():
            print(f"  {name:<28} {value:8.2f} ms   ratio vs load_all: {value / anchor:6.1f}")
        print(f"  flush_check() per script     {results['flush_check()'] / len(registry):8.2f} ms")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
