"""Rate-limit hits per second: atomicops vs the ``limits`` library, same algorithm, same server.

Anchors (``limits`` with its ``RedisStorage``, redis-py underneath, on the one
redis-server started for the run):

* fixed window: ``FixedWindowRateLimiter.hit`` (its Lua ``INCRBY`` + ``EXPIRE``);
* sliding window: ``SlidingWindowCounterRateLimiter.hit`` (the two-window weighted
  estimate, on two keys, by key TTLs instead of server ``TIME``);
* token bucket: ``limits`` has none; reported against atomicops' own fixed window.

Each is measured under the limit (every hit allowed) and over it (every hit rejected),
and round trips per hit are counted at the socket (``send_packed_command`` calls).
Target: at least ``limits``' rate (ratio >= 1.0), one round trip per hit. Run:
    .venv/bin/python benchmarks/bench_ratelimit.py
"""

from __future__ import annotations

import os
from collections.abc import Callable

from _common import compare, report, setup_django, start_server

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
        storage = RedisStorage(server.url)
        fixed = FixedWindowRateLimiter(storage)
        sliding = SlidingWindowCounterRateLimiter(storage)
        print(
            f"server {server.name} {server.version()}, limits {limits.__version__}, "
            f"{N} hits x {ROUNDS} interleaved rounds, median"
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
                # refill_rate = limit per minute, in tokens per second
                "atomicops token_bucket": lambda limit=limit, tag=tag: token_bucket(
                    f"tb{tag}", limit, limit / 60, client=client
                ),
            }
            rates = compare(contenders, N, rounds=ROUNDS)
            for name, fn in contenders.items():
                trips[name] = round_trips(fn)
            fixed_group = (
                "limits fixed window",
                "atomicops fixed_window",
                "atomicops token_bucket",
            )
            sliding_group = ("limits sliding window counter", "atomicops sliding_window")
            for title, names in (("fixed window", fixed_group), ("sliding window", sliding_group)):
                report(f"{title}, {scenario}", {n: rates[n] for n in names}, names[0])
            print(
                f"\nround trips per hit ({scenario}): "
                + ", ".join(f"{name} {value:.2f}" for name, value in trips.items())
            )
            fw = rates["atomicops fixed_window"] / rates["limits fixed window"]
            sw = rates["atomicops sliding_window"] / rates["limits sliding window counter"]
            tb = rates["atomicops token_bucket"] / rates["atomicops fixed_window"]
            summary.append(f"{scenario}: fixed {fw:.3f}, sliding {sw:.3f}, bucket/fixed {tb:.3f}")

        print("\natomicops / limits, same algorithm (target >= 1.0, one round trip per hit):")
        for line in summary:
            print(f"  {line}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
