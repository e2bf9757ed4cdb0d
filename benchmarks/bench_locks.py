"""Locks: acquire+release per second, and hand-off latency from a release to a waiter.

Anchors, all on one redis-server started for the run:

* redis-py's ``Lock`` (``SET NX PX`` to acquire, a Lua release: two round trips, no
  fencing token; blocking acquire polls every 0.1 s);
* python-redis-lock (``SET NX`` + Lua release; waiters ``BLPOP`` a signal list).

Target: atomicops' ``Lock`` no slower than redis-py's ``Lock`` (ratio >= 1.0) while
also issuing fencing tokens. Run:
    .venv/bin/python benchmarks/bench_locks.py
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import time
from collections.abc import Callable

from _common import compare_rounds, paired, report, setup_django, start_server

N = int(os.environ.get("BENCH_N", "2000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "9"))
HANDOFFS = int(os.environ.get("BENCH_HANDOFFS", "60"))
_ctx = multiprocessing.get_context("fork")


def make_lock(kind: str, port: int, name: str) -> tuple[Callable[[], object], Callable[[], object]]:
    """(acquire, release) of one lock object of ``kind`` on its own connection."""
    import redis
    import redis_lock

    from atomicops import Lock

    client = redis.Redis(port=port)
    if kind == "atomicops Lock":
        lock = Lock(name, ttl=10, client=client)
        return lock.acquire, lock.release
    if kind == "redis-py Lock":
        lock = client.lock(name, timeout=10)
        return lock.acquire, lock.release
    if kind == "python-redis-lock":
        lock = redis_lock.Lock(client, name, expire=10)
        return lock.acquire, lock.release
    raise ValueError(kind)


def cpu_per_call(fn: Callable[[], object], n: int, rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(n):
            fn()
        samples.append((time.process_time() - started) / n)
    return statistics.median(samples)


def waiter(kind: str, port: int, go, done, rounds: int) -> None:
    acquire, release = make_lock(kind, port, "handoff")
    for _ in range(rounds):
        go.get()
        acquire()  # blocks until the parent releases
        woke = time.monotonic()
        release()
        done.put(woke)


def handoff(kind: str, port: int, rounds: int) -> list[float]:
    """Seconds from calling release() to the blocked waiter's acquire() returning."""
    acquire, release = make_lock(kind, port, "handoff")
    go, done = _ctx.Queue(), _ctx.Queue()
    process = _ctx.Process(target=waiter, args=(kind, port, go, done, rounds), daemon=True)
    process.start()
    latencies = []
    try:
        for _ in range(rounds):
            acquire()
            go.put(1)
            time.sleep(0.03)  # let the waiter find the lock taken and block
            released = time.monotonic()
            release()
            latencies.append(done.get(timeout=30) - released)
    finally:
        process.join(10)
    return latencies


def main() -> None:
    server = start_server()
    try:
        setup_django(server.url)
        kinds = ["atomicops Lock", "redis-py Lock", "python-redis-lock"]
        contenders = {}
        for kind in kinds:
            acquire, release = make_lock(kind, server.port, f"bench:{kind}")
            contenders[kind] = lambda a=acquire, r=release: (a(), r())
        per_round = compare_rounds(contenders, N, rounds=ROUNDS)
        rates = {kind: statistics.median(values) for kind, values in per_round.items()}
        print(
            f"server {server.name} {server.version()}, {N} pairs x {ROUNDS} interleaved rounds, "
            "median"
        )
        report("acquire+release per second (one process, one connection each)", rates,
               "redis-py Lock")  # fmt: skip
        ratio = rates["atomicops Lock"] / rates["redis-py Lock"]
        pair = paired(per_round["atomicops Lock"], per_round["redis-py Lock"])
        print(
            f"\natomicops / redis-py Lock = {ratio:.3f}, paired per round {pair:.3f} "
            "(target >= 1.0, with fencing tokens)"
        )
        # Wall-clock rates swing with whatever else runs on the machine; the client's own
        # CPU time per pair is the steadier view of what each library adds.
        print("\nclient CPU time per acquire+release (process_time, median of rounds)")
        cpu = {kind: cpu_per_call(fn, N, ROUNDS) for kind, fn in contenders.items()}
        for kind, value in cpu.items():
            print(f"  {kind:<22} {value * 1e6:8.1f} us")

        print(
            f"\nhand-off latency, release() -> blocked waiter's acquire() returns ({HANDOFFS} runs)"
        )
        medians = {}
        for kind in kinds:
            latencies = handoff(kind, server.port, HANDOFFS)
            medians[kind] = statistics.median(latencies)
            p90 = statistics.quantiles(latencies, n=10)[-1]
            print(f"  {kind:<22} median {medians[kind] * 1000:8.2f} ms   p90 {p90 * 1000:8.2f} ms")
        print(
            "\natomicops / python-redis-lock median hand-off = "
            f"{medians['atomicops Lock'] / medians['python-redis-lock']:.2f}"
        )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
