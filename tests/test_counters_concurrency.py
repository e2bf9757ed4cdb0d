"""Counters and compare-and-set under 8 real processes on a real server (redis and valkey).

* bounded_incr ends at exactly the limit with exactly ``limit`` calls applied, while
  another process flushes the script cache every 50 ms: zero failed calls.
* The same workload as GET then SET (the seed's pipeline point) loses updates; the
  count is printed, next to the Lua version's zero.
* compare_and_set: processes race to move a value one step at a time; every step has
  exactly one winner. "Only if absent" has exactly one creator per key.
"""

from __future__ import annotations

import time

import pytest
import redis

from atomicops import bounded_incr, compare_and_set, registry
from atomicops.primitives import counters as c
from tests.multiproc import Background, run_processes

pytestmark = [pytest.mark.real, pytest.mark.slow]

PROCESSES = 8
PER_PROCESS = 500
LIMIT = PROCESSES * PER_PROCESS // 2  # half the calls can apply


def say(capsys, message: str) -> None:
    """Show a line in the test output even without -s (the counts are the point)."""
    with capsys.disabled():
        print(f"\n  {message}")


def _bounded_worker(url: str, key: str, limit: int, calls: int) -> dict:
    client = redis.Redis.from_url(url)
    script = registry.get(c.BOUNDED_INCR)
    fallbacks_before = script.stats["fallbacks"]
    applied, failures = [], []
    for _ in range(calls):
        try:
            result = bounded_incr(key, limit, client=client)
        except Exception as exc:  # any failure is what this test counts
            failures.append(repr(exc))
            continue
        if result.applied:
            applied.append(result.value)
    return {
        "applied": applied,
        "failures": failures,
        "fallbacks": script.stats["fallbacks"] - fallbacks_before,
    }


def _get_then_set_worker(url: str, key: str, limit: int, calls: int) -> dict:
    """The read-check-write done by the client: GET, decide, SET in a pipeline."""
    client = redis.Redis.from_url(url)
    claimed = 0
    for _ in range(calls):
        current = int(client.get(key) or 0)
        if current + 1 <= limit:
            pipe = client.pipeline()
            pipe.set(key, current + 1)
            pipe.execute()
            claimed += 1
    return {"claimed": claimed}


def _flusher(stop, url: str, interval: float) -> int:
    client = redis.Redis.from_url(url)
    flushes = 0
    while not stop.is_set():
        client.script_flush()
        flushes += 1
        time.sleep(interval)
    return flushes


def test_bounded_incr_exact_under_script_flush_every_50ms(capsys, real_client, real_server):
    with Background(_flusher, real_server.url, 0.05) as flusher:
        time.sleep(0.06)  # the first flushes land before and among the first calls
        args = [(real_server.url, "views", LIMIT, PER_PROCESS)] * PROCESSES
        results = run_processes(_bounded_worker, args)
        flushes = flusher.stop()

    failures = [f for r in results for f in r["failures"]]
    applied = sorted(v for r in results for v in r["applied"])
    fallbacks = sum(r["fallbacks"] for r in results)
    assert failures == []
    assert applied == list(range(1, LIMIT + 1))  # exactly LIMIT applied, each value once
    assert int(real_client.get("views")) == LIMIT
    # The flushes really hit the calls: some had to take the NOSCRIPT fallback.
    assert flushes >= 2 and fallbacks >= 1
    say(
        capsys,
        f"{real_server.name}: {flushes} SCRIPT FLUSHes, {fallbacks} NOSCRIPT fallbacks, "
        f"{len(failures)} failed calls, {len(applied)} applied of {PROCESSES * PER_PROCESS}",
    )


def test_get_then_set_loses_updates_and_lua_does_not(capsys, real_client, real_server):
    args = [(real_server.url, "naive", LIMIT, PER_PROCESS)] * PROCESSES
    naive = run_processes(_get_then_set_worker, args)
    claimed = sum(r["claimed"] for r in naive)
    final = int(real_client.get("naive"))
    lost = claimed - final

    args = [(real_server.url, "lua", LIMIT, PER_PROCESS)] * PROCESSES
    lua = run_processes(_bounded_worker, args)
    lua_applied = sum(len(r["applied"]) for r in lua)
    lua_final = int(real_client.get("lua"))

    say(
        capsys,
        f"{real_server.name}: {PROCESSES} processes x {PER_PROCESS} calls, limit {LIMIT}. "
        f"GET then SET: {claimed} increments claimed, counter at {final}, "
        f"{lost} updates lost ({max(0, claimed - LIMIT)} claimed past the limit). "
        f"bounded_incr: {lua_applied} applied, counter at {lua_final}, "
        f"{lua_applied - lua_final} lost.",
    )
    # The harness really interleaves the processes: the naive version loses updates...
    assert lost > 0
    # ...and the script, under the same load, loses none and stops at the limit.
    assert lua_applied == lua_final == LIMIT


STEPS = 300
RACERS = 6


def _cas_racer(url: str, key: str, steps: int) -> dict:
    client = redis.Redis.from_url(url)
    won, attempts = [], 0
    while True:
        current = int(client.get(key))
        if current >= steps:
            return {"won": won, "attempts": attempts}
        attempts += 1
        if compare_and_set(key, current, current + 1, client=client):
            won.append(current)


def test_cas_race_one_winner_per_step(capsys, real_client, real_server):
    real_client.set("step", 0)
    results = run_processes(_cas_racer, [(real_server.url, "step", STEPS)] * RACERS)
    won = sorted(step for r in results for step in r["won"])
    attempts = sum(r["attempts"] for r in results)
    assert won == list(range(STEPS))  # every step moved by exactly one process
    assert int(real_client.get("step")) == STEPS
    say(capsys, f"{real_server.name}: {STEPS} steps, {attempts} attempts by {RACERS} racers")
    assert attempts > STEPS  # the racers really competed (some lost a step)


def _creator(url: str, keys: list[str], me: str) -> list[str]:
    client = redis.Redis.from_url(url)
    return [key for key in keys if compare_and_set(key, None, me, client=client)]


def test_only_if_absent_has_one_creator_per_key(real_client, real_server):
    keys = [f"once:{i}" for i in range(300)]
    results = run_processes(_creator, [(real_server.url, keys, f"p{i}") for i in range(RACERS)])
    created = sorted(key for batch in results for key in batch)
    assert created == sorted(keys)  # each key created exactly once
    for i, batch in enumerate(results):
        for key in batch:
            assert real_client.get(key) == f"p{i}".encode()  # and holds its creator's value
