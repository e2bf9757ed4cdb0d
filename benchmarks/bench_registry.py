"""Calls per second of a registered script vs raw redis-py ``evalsha`` on the same connection.

Target: atomicops' overhead at most 5% (ratio >= 0.95). Run:
    .venv/bin/python benchmarks/bench_registry.py
"""

from __future__ import annotations

import os

from _common import compare, report, setup_django, start_server

N = int(os.environ.get("BENCH_N", "20000"))
SOURCE = "return redis.call('INCR', KEYS[1])"


def main() -> None:
    server = start_server()
    try:
        setup_django(server.url)
        import redis

        from atomicops import registry

        client = redis.Redis(port=server.port, single_connection_client=True)
        script = registry.register("bench_incr", SOURCE)
        sha = client.script_load(SOURCE)
        redis_py_script = client.register_script(SOURCE)
        rates = compare(
            {
                "raw redis-py evalsha": lambda: client.evalsha(sha, 1, "k"),
                "atomicops registered script": lambda: script(["k"], client=client),
                "redis-py Script object": lambda: redis_py_script(keys=["k"]),
            },
            N,
        )
        print(f"server {server.name} {server.version()}, {N} calls x 5 interleaved rounds, median")
        report("registered script vs raw evalsha (same connection)", rates, "raw redis-py evalsha")
        ratio = rates["atomicops registered script"] / rates["raw redis-py evalsha"]
        print(f"\natomicops / raw evalsha = {ratio:.3f} (target >= 0.95)")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
