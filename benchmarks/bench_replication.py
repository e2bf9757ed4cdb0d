"""bounded_incr with WAIT_REPLICAS=1 vs without, on one primary with one replica.

The WAIT rides in the write's own round trip (``EVALSHA ...; WAIT 1 t`` in one batch),
so what it costs is the replica's acknowledgement: the primary answers WAIT once the
replica has read the write from its replication stream and said so (replicas send
REPLCONF ACK as soon as WAIT asks for one). Rounds interleaved; prints both rates, the
ratio and the per-call latencies. Starts its own two servers on free ports. Run:
    .venv/bin/python benchmarks/bench_replication.py
"""

from __future__ import annotations

import os
import statistics
import time

from _common import paired, rate, setup_django

N = int(os.environ.get("BENCH_N", "5000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "7"))
LIMIT = 2**53 - 1


def main() -> None:
    from tests.servers import Server, redis_server_binary

    binary = os.environ.get("BENCH_SERVER_BINARY") or redis_server_binary()
    if not binary:
        raise SystemExit("redis-server not found on PATH")
    primary = Server("bench-primary", binary).start()
    replica = Server("bench-replica", binary, extra=("--replicaof", "127.0.0.1", str(primary.port)))
    replica.start()
    try:
        run(primary, replica)
    finally:
        replica.stop()
        primary.stop()


def run(primary, replica) -> None:
    import redis

    setup_django(primary.url)
    from django.test.utils import override_settings

    from atomicops import bounded_incr

    with redis.Redis(port=primary.port) as client:
        deadline = time.monotonic() + 20
        while client.info("replication").get("slave0", {}).get("state") != "online":
            if time.monotonic() > deadline:  # the first sync waits repl-diskless-sync-delay
                raise SystemExit("the replica did not come online")
            time.sleep(0.05)
    base = {
        "URL": primary.url,
        "LOAD_ON_STARTUP": False,
        "STATS_FLUSH_INTERVAL": 0,
        "PROMETHEUS": False,  # as every anchor in benchmarks/: no observer on the path
        "OPENTELEMETRY": False,
    }
    modes = {
        "bounded_incr": base,
        "bounded_incr, WAIT_REPLICAS=1": {**base, "WAIT_REPLICAS": 1, "WAIT_TIMEOUT_MS": 1000},
    }
    rates: dict[str, list[float]] = {name: [] for name in modes}
    for attempt in range(ROUNDS + 1):
        for name, atomicops in modes.items():
            with override_settings(ATOMICOPS=atomicops):
                measured = rate(lambda: bounded_incr("bench:replicated", LIMIT), N)
            if attempt:  # the first round warms connections and the script cache
                rates[name].append(measured)
    (plain, plain_rates), (waited, wait_rates) = rates.items()
    print(
        f"\nbounded_incr on one primary with one replica ({primary.binary.rsplit('/', 1)[-1]} {primary.version()})"
    )
    for name, values in rates.items():
        median = statistics.median(values)
        print(f"  {name:<34} {median:>8,.0f}/s   {1e6 / median:>6.1f} us per call")
    ratio = paired(wait_rates, plain_rates)
    extra = statistics.median(
        1e6 / w - 1e6 / p for w, p in zip(wait_rates, plain_rates, strict=True)
    )
    print(f"  ratio WAIT / no WAIT: {ratio:.3f} (median of {ROUNDS} paired rounds of {N} calls);")
    print(f"  WAIT adds {extra:.1f} us per write: the replica's acknowledgement")


if __name__ == "__main__":
    main()
