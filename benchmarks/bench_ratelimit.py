"""Rate-limit hits per second: atomicops vs the ``limits`` library, same algorithm, same server.

Anchors (``limits`` with its ``RedisStorage``, redis-py underneath, on the one
redis-server started for the run):

* fixed window: ``FixedWindowRateLimiter.hit`` (its Lua ``INCRBY`` + ``EXPIRE``);
* sliding window: ``SlidingWindowCounterRateLimiter.hit`` (the two-window weighted
  estimate, on two keys, by key TTLs instead of server ``TIME``);
* token bucket: ``limits`` has none; reported against atomicops' own fixed window.

An atomicops hit also returns what ``RateLimit-*`` headers need (remaining, reset); with
``limits`` that is ``get_window_stats``, one or two more round trips, printed for reference.

Each is measured under the limit (every hit allowed) and over it (every hit rejected),
and round trips per hit are counted at the socket (``send_packed_command`` calls). Next
to hits per second (which swing with whatever else the machine runs) the CPU time per
hit of this process and of the server is printed: the steadier measure of cost.
Target: at least ``limits``' rate (ratio >= 1.0), one round trip per hit. Run:
    .venv/bin/python benchmarks/bench_ratelimit.py
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from _common import paired, setup_django, start_server

N = int(os.environ.get("BENCH_N", "1000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "21"))
SAMPLE = 500  # hits over which round trips are counted


def round_trips(fn: Callable[[], object]) -> float:
    """Socket writes per call of ``fn``: every redis-py command and atomicops batch is one."""
    import redis.connection

    original = redis.connection.AbstractConnection.send_packed_command
    writes = 0

    def counting(self, command, check_health=True):
        nonlocal writes
        writes += 1
        return original(self, command, check_health)

    redis.connection.AbstractConnection.send_packed_command = counting
    try:
        for _ in range(SAMPLE):
            fn()
    finally:
        redis.connection.AbstractConnection.send_packed_command = original
    return writes / SAMPLE


Sample = tuple[float, float, float]  # hits/s, client CPU us/hit, server CPU us/hit


def measure(contenders: dict[str, Callable[[], object]], admin: Any) -> dict[str, list[Sample]]:
    """name -> one (hits/s, client CPU us/hit, server CPU us/hit) per interleaved round.

    Wall-clock rates swing with whatever else the machine runs; CPU per hit (this
    process's, and the server's from INFO) is steadier, so both are printed.
    """

    def server_cpu() -> float:
        info = admin.info("cpu")
        return info["used_cpu_user"] + info["used_cpu_sys"]

    samples: dict[str, list[Sample]] = {name: [] for name in contenders}
    for fn in contenders.values():
        fn()  # warm up: connections, script cache
    for _ in range(ROUNDS):
        for name, fn in contenders.items():
            server0, cpu0, wall0 = server_cpu(), time.process_time(), time.perf_counter()
            for _ in range(N):
                fn()
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            samples[name].append((N / wall, cpu / N * 1e6, (server_cpu() - server0) / N * 1e6))
    return samples


def medians(samples: dict[str, list[Sample]]) -> dict[str, Sample]:
    return {
        name: tuple(statistics.median(column) for column in zip(*rows, strict=True))  # type: ignore[misc]
        for name, rows in samples.items()
    }


def show(title: str, results: dict[str, Sample], anchor: str) -> None:
    print(f"\n{title}")
    base = results[anchor][0]
    for name, (rate, client_us, server_us) in results.items():
        print(
            f"  {name:<32} {rate:>8,.0f}/s  ratio {rate / base:.3f}   "
            f"CPU/hit: client {client_us:5.1f} us, server {server_us:5.1f} us"
        )


def main() -> None:
    server = start_server()
    try:
        setup_django(server.url)
        import limits
        import redis
        from limits.storage import RedisStorage
        from limits.strategies import FixedWindowRateLimiter, SlidingWindowCounterRateLimiter

        from atomicops import fixed_window, sliding_window, token_bucket

        client = redis.Redis(port=server.port)
        admin = redis.Redis(port=server.port)
        storage = RedisStorage(server.url)
        fixed = FixedWindowRateLimiter(storage)
        sliding = SlidingWindowCounterRateLimiter(storage)
        print(
            f"server {server.name} {server.version()}, limits {limits.__version__}, "
            f"{N} hits x {ROUNDS} interleaved rounds, medians"
        )

        scenarios = {
            # limit per minute: 10**8 -> every hit allowed; 10 -> every hit after the
            # tenth rejected (what a limiter does while it is protecting something).
            "under the limit": 10**8,
            "over the limit": 10,
        }
        trips: dict[str, float] = {}
        summary = []
        for scenario, limit in scenarios.items():
            item = limits.RateLimitItemPerMinute(limit)
            tag = "u" if limit > 10 else "o"
            contenders = {
                "limits fixed window": lambda item=item, tag=tag: fixed.hit(item, f"fw{tag}"),
                "atomicops fixed_window": lambda limit=limit, tag=tag: fixed_window(
                    f"fw{tag}", limit, 60_000, client=client
                ),
                "limits sliding window counter": lambda item=item, tag=tag: sliding.hit(
                    item, f"sw{tag}"
                ),
                "atomicops sliding_window": lambda limit=limit, tag=tag: sliding_window(
                    f"sw{tag}", limit, 60_000, client=client
                ),
                # What a 429 with RateLimit-* headers needs (remaining, reset) comes
                # with every atomicops hit; limits asks for it separately.
                "limits fixed + get_window_stats": lambda item=item, tag=tag: (
                    fixed.hit(item, f"fw{tag}"),
                    fixed.get_window_stats(item, f"fw{tag}"),
                ),
                "limits sliding + get_window_stats": lambda item=item, tag=tag: (
                    sliding.hit(item, f"sw{tag}"),
                    sliding.get_window_stats(item, f"sw{tag}"),
                ),
                # refill_rate = limit per minute, in tokens per second
                "atomicops token_bucket": lambda limit=limit, tag=tag: token_bucket(
                    f"tb{tag}", limit, limit / 60, client=client
                ),
            }
            samples = measure(contenders, admin)
            results = medians(samples)
            for name, fn in contenders.items():
                trips[name] = round_trips(fn)
            fixed_group = (
                "limits fixed window",
                "atomicops fixed_window",
                "limits fixed + get_window_stats",
                "atomicops token_bucket",
            )
            sliding_group = (
                "limits sliding window counter",
                "atomicops sliding_window",
                "limits sliding + get_window_stats",
            )
            for title, names in (("fixed window", fixed_group), ("sliding window", sliding_group)):
                show(f"{title}, {scenario}", {n: results[n] for n in names}, names[0])
            print(
                f"\nround trips per hit ({scenario}): "
                + ", ".join(f"{name} {value:.2f}" for name, value in trips.items())
            )

            def ratio(a: str, b: str, column: int = 0, results=results) -> float:
                return results[a][column] / results[b][column]

            def paired_rates(a: str, b: str, samples=samples) -> float:
                return paired([x[0] for x in samples[a]], [y[0] for y in samples[b]])

            fw = ("atomicops fixed_window", "limits fixed window")
            sw = ("atomicops sliding_window", "limits sliding window counter")
            summary.append(
                f"{scenario}: fixed {ratio(*fw):.3f}, sliding {ratio(*sw):.3f} (hits/s; "
                f"paired per round: {paired_rates(*fw):.3f} / {paired_rates(*sw):.3f}); client CPU per hit "
                f"{ratio(*fw, 1):.3f} / {ratio(*sw, 1):.3f}, "
                f"server CPU per hit "
                f"{ratio(*fw, 2):.3f} / {ratio(*sw, 2):.3f}"
            )

        print(
            "\natomicops / limits, same algorithm (target: hits/s ratio >= 1.0; CPU ratios < 1 are cheaper):"
        )
        for line in summary:
            print(f"  {line}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
