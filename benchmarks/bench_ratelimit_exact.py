"""The exact window next to the approximate sliding window: memory per client, and error.

1. Bytes per client (``MEMORY USAGE`` of its key) after a client used its full quota
   of N = 3, 100, 10,000 per minute, for the exact window (one run per server ms with
   admitted hits, so: every hit in its own ms, the worst case; and the whole quota in
   one ms, a burst) and for the sliding window (one hash of four fields whatever N).
   The paced case places each hit in its own ms through the script's test-only clock
   argument (a minute of real time otherwise); DRF's own throttle stores a pickled
   list of N floats in the cache, printed for reference.
2. The sliding window's error, real time, real server: clients pacing themselves at or
   below the rate (DRF refuses none of their requests), run side by side on both
   algorithms in parallel processes. Minute rates are run scaled to a second (the
   algorithms only see ratios of times): "3/min every 20 s" is 3/s every 333 ms.
   Also the wait after one request at 1/day, and what a client obeying Retry-After
   gets at 5 per window.
3. Hits per second, one client, under the limit and over it (limit 1000/min), for
   reference: the exact window does a little more per hit (a list read at each end,
   a push or an in-place update).

Run: .venv/bin/python benchmarks/bench_ratelimit_exact.py (about 15 s).
"""

from __future__ import annotations

import pickle
import time

from _common import rate, setup_django, start_server

PACED = [
    # (rate as the issue writes it, limit, window_ms, pause in s, requests)
    ("1/s every 1.2 s", 1, 1000, 1.2, 10),
    ("2/s every 0.6 s", 2, 1000, 0.6, 16),
    ("5/s every 0.24 s", 5, 1000, 0.24, 30),
    ("3/min every 20 s (as 3/s every 333 ms)", 3, 1000, 1 / 3, 30),
    ("3/min every 24 s (as 3/s every 400 ms)", 3, 1000, 0.4, 25),
]


def hit(algorithm: str, key: str, limit: int, window_ms: int, client):
    from atomicops import exact_window, sliding_window

    function = exact_window if algorithm == "exact" else sliding_window
    return function(key, limit, window_ms, client=client)


def paced(url: str, algorithm: str, limit: int, window_ms: int, pause: float, n: int) -> int:
    """Refused requests of a client that waits ``pause`` after each reply."""
    import redis

    client = redis.Redis.from_url(url)
    refused = 0
    for _ in range(n):
        refused += not hit(
            algorithm, f"paced:{algorithm}:{limit}:{pause}", limit, window_ms, client
        ).allowed
        time.sleep(pause)
    return refused


def obeying(url: str, algorithm: str, limit: int, window_ms: int, windows: int) -> float:
    """Admitted per window by a client that retries exactly when Retry-After says."""
    import redis

    client = redis.Redis.from_url(url)
    admitted, end = 0, time.monotonic() + windows * window_ms / 1000
    while time.monotonic() < end:
        result = hit(algorithm, f"obeying:{algorithm}", limit, window_ms, client)
        if result.allowed:
            admitted += 1
        else:
            time.sleep(result.retry_after_ms / 1000)
    return admitted / windows


def memory(client) -> list[tuple[int, int, int, int, int]]:
    from atomicops import sliding_window
    from atomicops.primitives.calls import send
    from atomicops.primitives.ratelimit import exact_log_call

    rows = []
    for n in (3, 100, 10_000):
        for i in range(n):  # each hit in its own ms: one run each
            send(exact_log_call(f"paced:{n}", n, 60_000, 1, clock_ms=10**12 + i), client)
        send(exact_log_call(f"burst:{n}", n, 60_000, n, clock_ms=10**12), client)
        for _ in range(min(n, 3)):  # the hash is the same size whatever the counts
            sliding_window(f"sliding:{n}", n, 60_000, client=client)
        drf = len(pickle.dumps([time.time() + i / 1000 for i in range(n)]))
        rows.append(
            (
                n,
                client.memory_usage(f"paced:{n}"),
                client.memory_usage(f"burst:{n}"),
                client.memory_usage(f"sliding:{n}"),
                drf,
            )
        )
    return rows


def main() -> None:
    import redis

    from tests.multiproc import run_processes

    server = start_server()
    try:
        setup_django(server.url)
        client = redis.Redis.from_url(server.url)
        print("Bytes per client that used its full quota of N per minute (MEMORY USAGE):\n")
        print("| N | exact, each hit in its own ms | exact, all in one ms | sliding window "
              "| DRF's pickled list (reference) |")  # fmt: skip
        print("|---|---|---|---|---|")
        for n, paced_b, burst_b, sliding_b, drf_b in memory(client):
            print(f"| {n:,} | {paced_b:,} | {burst_b:,} | {sliding_b:,} | {drf_b:,} |")
        client.flushall()

        args = [
            (server.url, algorithm, limit, window, pause, n)
            for _, limit, window, pause, n in PACED
            for algorithm in ("sliding", "exact")
        ]
        refused = run_processes(paced, args)
        print("\nPaced clients, real time (DRF refuses none):\n")
        print("| rate | one request every | sliding window refused | exact refused |")
        print("|---|---|---|---|")
        for i, (label, _, _, _, n) in enumerate(PACED):
            per, _, every = label.partition(" every ")
            print(f"| {per} | {every} | {refused[2 * i]} of {n} | {refused[2 * i + 1]} of {n} |")

        client.flushall()
        waits = []
        for algorithm in ("sliding", "exact"):
            hit(algorithm, f"day:{algorithm}", 1, 86_400_000, client)
            waits.append(hit(algorithm, f"day:{algorithm}", 1, 86_400_000, client).retry_after_ms)
        print(
            f"\n1/day, the wait after one request: sliding window {waits[0] / 3_600_000:.1f} h, "
            f"exact {waits[1] / 3_600_000:.1f} h"
        )
        got = run_processes(obeying, [(server.url, a, 5, 1000, 6) for a in ("sliding", "exact")])
        print(
            f"A client obeying Retry-After at 5 per window (5/s for 6 s): sliding window "
            f"{got[0]:.1f} per window, exact {got[1]:.1f}"
        )
        client.flushall()
        print("\nHits per second, one client (median of 5 rounds of 2000):\n")
        print("| | sliding window | exact window |")
        print("|---|---|---|")
        for label, limit in (("under the limit", 10**9), ("over the limit", 1)):
            cells = []
            for algorithm in ("sliding", "exact"):
                rounds = sorted(
                    rate(
                        lambda a=algorithm, n=limit: hit(a, f"speed:{a}:{n}", n, 60_000, client),
                        2000,
                    )
                    for _ in range(5)
                )
                cells.append(f"{rounds[2]:,.0f}")
            print(f"| {label} | {cells[0]} | {cells[1]} |")
    finally:
        server.remove()


if __name__ == "__main__":
    main()
