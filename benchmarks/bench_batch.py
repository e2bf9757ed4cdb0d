"""Ten primitive calls in one batch vs one by one vs a redis-py pipeline; each primitive
next to a PING.

1. The same ten calls (four ``bounded_incr``, two ``incr``, two ``compare_and_set``, two
   ``fixed_window``, results read) made three ways: ``with batch() as b`` (one round
   trip), one by one (ten), and a redis-py pipeline (``transaction=False``) of ten raw
   ``EVALSHA`` of the same scripts with the same arguments, no results interpreted: the
   floor of one round trip carrying ten script calls. Target: the batch at >= 0.9 of the
   pipeline's rate.
2. Every primitive's time per call next to a ``PING`` on the same connection (the floor
   of one round trip): how close a call is to the network's limit.
3. ``AUTO_PIPELINE``: 64 tasks calling ``abounded_incr`` at once, with it on and off, vs
   64 tasks calling raw ``redis.asyncio`` ``evalsha`` on the same kind of pool (target:
   2x), and a lone task with it on and off (what it costs a caller alone).

Whether redis-py parses with hiredis is printed; run it with and without (``pip install
atomicops[fast]``) to compare. One redis-server started for the run, medians over
interleaved rounds, one connection. Run:
    .venv/bin/python benchmarks/bench_batch.py
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from decimal import Decimal

from _common import compare_rounds, paired, report, setup_django, start_server

N = int(os.environ.get("BENCH_N", "3000"))  # batches of ten per round
N_SINGLE = int(os.environ.get("BENCH_N_SINGLE", "20000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
N_ASYNC = int(os.environ.get("BENCH_N_ASYNC", "20000"))
TASKS = int(os.environ.get("BENCH_TASKS", "64"))
BIG = 2**53 - 1


def batch_part(client) -> None:
    from atomicops import (
        batch,
        bounded_incr,
        compare_and_set,
        fixed_window,
        incr,
        registry,
    )

    def in_batch() -> None:
        with batch(client=client) as b:
            pending = [b.bounded_incr(f"b{i}", BIG) for i in range(4)]
            pending += [b.incr(f"n{i}") for i in range(2)]
            pending += [b.compare_and_set(f"c{i}", "x", "x") for i in range(2)]
            pending += [b.fixed_window(f"w{i}", BIG, 60_000) for i in range(2)]
        for p in pending:
            p.result()

    def one_by_one() -> None:
        for i in range(4):
            bounded_incr(f"b{i}", BIG, client=client)
        for i in range(2):
            incr(f"n{i}", client=client)
        for i in range(2):
            compare_and_set(f"c{i}", "x", "x", client=client)
        for i in range(2):
            fixed_window(f"w{i}", BIG, 60_000, client=client)

    sha = {name: registry.get(name).sha for name in registry.load_all(client)}
    commands = (
        [("EVALSHA", sha["counter_bounded_incr"], 1, f"b{i}", BIG, 1, 0) for i in range(4)]
        + [("EVALSHA", sha["counter_incr"], 1, f"n{i}", 1, 0) for i in range(2)]
        + [("EVALSHA", sha["cas_set"], 1, f"c{i}", "x", 0, "x") for i in range(2)]
        + [("EVALSHA", sha["ratelimit_fixed_window"], 1, f"w{i}", 60_000, 1) for i in range(2)]
    )

    def pipeline() -> None:
        pipe = client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        pipe.execute()

    for i in range(2):
        client.set(f"c{i}", "x")
    rounds = compare_rounds(
        {
            "batch() of 10": in_batch,
            "the 10 one by one": one_by_one,
            "redis-py pipeline, 10 raw evalsha": pipeline,
        },
        N,
        ROUNDS,
    )
    rates = {name: 10 * statistics.median(values) for name, values in rounds.items()}
    print(f"\n{N} x 10 calls x {ROUNDS} interleaved rounds, median calls/s, one connection")
    report("ten calls: batch vs one by one vs pipeline", rates, "redis-py pipeline, 10 raw evalsha")
    ratio = paired(rounds["batch() of 10"], rounds["redis-py pipeline, 10 raw evalsha"])
    print(f"  batch / pipeline, paired by round: {ratio:.3f} (target >= 0.9)")
    ratio = paired(rounds["batch() of 10"], rounds["the 10 one by one"])
    print(f"  batch / one by one, paired by round: {ratio:.2f}x")


def ping_part(client) -> None:
    import atomicops as ao

    client.set("cas", "x")
    contenders = {
        "PING (redis-py)": client.ping,
        "bounded_incr": lambda: ao.bounded_incr("bi", BIG, client=client),
        "bounded_decr": lambda: ao.bounded_decr("bd", -BIG, client=client),
        "incr": lambda: ao.incr("i", client=client),
        "incr_float": lambda: ao.incr_float("f", Decimal("0.5"), client=client),
        "get_counter": lambda: ao.get_counter("i", client=client),
        "reset_counter": lambda: ao.reset_counter("r", client=client),
        "compare_and_set": lambda: ao.compare_and_set("cas", "x", "x", client=client),
        "compare_and_delete": lambda: ao.compare_and_delete("none", "x", client=client),
        "fixed_window": lambda: ao.fixed_window("fw", BIG, 60_000, client=client),
        "sliding_window": lambda: ao.sliding_window("sw", 2**20, 60_000, client=client),
        "token_bucket": lambda: ao.token_bucket("tb", 2**40, 2**30, client=client),
    }
    rounds = compare_rounds(contenders, N_SINGLE // 4, ROUNDS)
    ping = rounds["PING (redis-py)"]
    print(f"\n{N_SINGLE // 4} calls x {ROUNDS} interleaved rounds, median, one connection")
    print("  call                       us/call   x PING (paired by round)")
    for name, values in rounds.items():
        us = 1e6 / statistics.median(values)
        print(f"  {name:<24} {us:>9.1f}   {paired(ping, values):.2f}")


async def _tasks(url: str, tasks: int, calls: int, raw: bool) -> float:
    import redis.asyncio

    from atomicops import abounded_incr, registry

    client = redis.asyncio.Redis.from_url(url, max_connections=tasks)
    sha = registry.get("counter_bounded_incr").sha
    per_task = calls // tasks

    async def worker() -> None:
        for _ in range(per_task):
            if raw:
                await client.evalsha(sha, 1, "a", BIG, 1, 0)
            else:
                await abounded_incr("a", BIG, client=client)

    await abounded_incr("a", BIG, client=client)  # load the scripts
    await asyncio.gather(*(worker() for _ in range(tasks)))  # warm: the pool's connections
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    elapsed = time.perf_counter() - started
    await client.aclose()
    return per_task * tasks / elapsed


def auto_pipeline_part(url: str) -> None:
    from django.conf import settings
    from django.test import override_settings

    def measure(tasks: int, calls: int, raw: bool = False, auto: bool = False) -> float:
        with override_settings(ATOMICOPS={**settings.ATOMICOPS, "AUTO_PIPELINE": auto}):
            return asyncio.run(_tasks(url, tasks, calls, raw))

    contenders = {
        f"raw async evalsha, {TASKS} tasks": lambda: measure(TASKS, N_ASYNC, raw=True),
        f"abounded_incr, {TASKS} tasks": lambda: measure(TASKS, N_ASYNC),
        f"abounded_incr, {TASKS} tasks, AUTO_PIPELINE": lambda: measure(TASKS, N_ASYNC, auto=True),
        "abounded_incr, 1 task": lambda: measure(1, N_ASYNC // 4),
        "abounded_incr, 1 task, AUTO_PIPELINE": lambda: measure(1, N_ASYNC // 4, auto=True),
    }
    rounds: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(ROUNDS):
        for name, fn in contenders.items():
            rounds[name].append(fn())
    rates = {name: statistics.median(values) for name, values in rounds.items()}
    print(f"\n{ROUNDS} interleaved rounds, median calls/s; tasks share one redis.asyncio pool")
    report("async: auto-pipelining", rates, f"raw async evalsha, {TASKS} tasks")
    many = paired(
        rounds[f"abounded_incr, {TASKS} tasks, AUTO_PIPELINE"],
        rounds[f"raw async evalsha, {TASKS} tasks"],
    )
    lone = paired(rounds["abounded_incr, 1 task, AUTO_PIPELINE"], rounds["abounded_incr, 1 task"])
    print(
        f"  {TASKS} tasks, AUTO_PIPELINE / raw evalsha, paired by round: {many:.2f}x (target >= 2)"
    )
    print(f"  lone caller, AUTO_PIPELINE / off, paired by round: {lone:.2f}")


def main() -> None:
    from redis.utils import HIREDIS_AVAILABLE

    server = start_server()
    try:
        setup_django(server.url)
        import redis

        client = redis.Redis(port=server.port, single_connection_client=True)
        print(f"server {server.name} {server.version()}; hiredis parser: {HIREDIS_AVAILABLE}")
        batch_part(client)
        ping_part(client)
        auto_pipeline_part(server.url)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
