"""Rate limits under 8 processes hammering one key on a real server.

Time is the server's: the sliding window and the token bucket report the server time
each decision was made at, and the checks below use it, so the proofs do not depend on
the test's clock or on how the processes were scheduled.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict

import pytest
import redis

from atomicops import fixed_window, registry
from atomicops.primitives import ratelimit as rl
from tests.multiproc import run_processes

pytestmark = [pytest.mark.real, pytest.mark.slow]

PROCESSES = 8


def _fixed_n(url: str, key: str, limit: int, window_ms: int, hits: int) -> list[tuple]:
    client = redis.Redis.from_url(url)
    out = []
    for _ in range(hits):
        r = fixed_window(key, limit, window_ms, client=client)
        out.append((r.allowed, r.count))
    return out


def _fixed_for(url: str, key: str, limit: int, window_ms: int, seconds: float) -> list[tuple]:
    client = redis.Redis.from_url(url)
    out = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        r = fixed_window(key, limit, window_ms, client=client)
        out.append((r.allowed, r.count))
    return out


def _raw_for(url: str, hit: rl._Hit, seconds: float) -> list[list]:
    client = redis.Redis.from_url(url)
    script = registry.get(hit.script)
    out = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        out.append(script(keys=hit.keys, args=hit.args, client=client))
    return out


def test_fixed_window_admits_exactly_the_limit(real_client, real_server):
    limit, per_process = 1_000, 400
    args = [(real_server.url, "rl", limit, 60_000, per_process)] * PROCESSES
    results = [r for batch in run_processes(_fixed_n, args) for r in batch]
    counts = sorted(count for _, count in results)
    assert counts == list(range(1, PROCESSES * per_process + 1))  # no hit lost or doubled
    assert sum(allowed for allowed, _ in results) == limit
    assert all(allowed == (count <= limit) for allowed, count in results)
    assert int(real_client.get("rl")) == PROCESSES * per_process


def test_fixed_window_admits_exactly_the_limit_in_every_window(real_client, real_server):
    """Many short windows. The server counts the windows (each ends by expiring the
    counter); every count 1..limit must occur once per window, no more."""
    limit, window = 30, 100
    expired_before = real_client.info("stats")["expired_keys"]
    args = [(real_server.url, "rl", limit, window, 1.0)] * PROCESSES
    results = [r for batch in run_processes(_fixed_for, args) for r in batch]
    time.sleep(window / 1000 + 0.05)
    assert real_client.exists("rl") == 0  # the last window is over (and counted)
    windows = real_client.info("stats")["expired_keys"] - expired_before

    occurrences = Counter(count for _, count in results)
    assert windows >= 5
    assert occurrences[1] == windows  # each window opened with one first hit
    assert all(occurrences[c] <= windows for c in range(1, limit + 1))
    # counts go 1, 2, 3... in each window: fewer windows reach each next count
    assert all(occurrences[c + 1] <= occurrences[c] for c in range(1, max(occurrences)))
    assert all(allowed == (count <= limit) for allowed, count in results)
    accepted = sum(allowed for allowed, _ in results)
    full = occurrences[limit + 1]  # windows where someone was turned away
    assert full >= windows // 2  # the processes did saturate the limit
    # every window that turned someone away had accepted exactly `limit`
    assert all(occurrences[c] >= full for c in range(1, limit + 1))
    assert accepted == sum(occurrences[c] for c in range(1, limit + 1))


def test_sliding_window_never_admits_more_than_the_limit_per_window(real_server):
    limit, window = 20, 200
    hit = rl.sliding_window_call("rl", limit, window, 1)
    batches = run_processes(_raw_for, [(real_server.url, hit, 1.0)] * PROCESSES)
    replies = [r for batch in batches for r in batch]
    admitted = sorted(now for allowed, _, _, _, now in replies if allowed)
    assert len(admitted) < len(replies)  # the limit was hit

    per_window = Counter(now // window for now in admitted)
    # No fixed window admits more than the limit...
    assert max(per_window.values()) <= limit
    # ...and at every admission the weighted estimate (recomputed from the log of
    # admissions, by server time) stays within it.
    seen: dict[int, int] = defaultdict(int)
    for now in admitted:
        seen[now] += 1
    running = defaultdict(int)
    for now in sorted(seen):
        win, elapsed = divmod(now, window)
        running[win] += seen[now]
        prev = per_window.get(win - 1, 0)
        assert prev * (window - elapsed) + running[win] * window <= limit * window, now
    # Any window_ms-long span, not aligned to the fixed windows, can see more: the
    # estimate assumes the previous window's hits were spread evenly, and a burst late
    # in it breaks that (here: the cold start, where the first window is used up at
    # once). The algorithm's bound is limit + prev * elapsed / window < 2 * limit;
    # docs/ratelimit.md gives the figure measured here (1.5x on the first burst).
    busiest = max(
        sum(1 for t in admitted if start <= t < start + window) for start in set(admitted)
    )
    assert busiest < 2 * limit, busiest


def test_token_bucket_refills_at_its_rate_under_load(real_server):
    """Every decision, replayed in server-time order, is the bucket's: refilled at its rate
    since the call before (capped at capacity), then one token taken if there was one."""
    capacity, rate = 20, 100.0
    hit = rl.token_bucket_call("rl", capacity, rate, 1)
    batches = run_processes(_raw_for, [(real_server.url, hit, 1.0)] * PROCESSES)
    # Calls are serialised by the server; within one microsecond the earlier left more.
    replies = sorted(
        (now, -float(tokens), bool(allowed))
        for batch in batches
        for allowed, _, _, _, tokens, now in batch
    )
    start, last = replies[0][0], replies[-1][0]  # the first call found (made) a full bucket
    admitted = [now for now, _, allowed in replies if allowed]
    assert len(admitted) < len(replies)  # the bucket ran dry

    level, previous, wasted = float(capacity), start, 0.0
    for now, neg_tokens, allowed in replies:
        refilled = level + rate * (now - previous) / 1_000_000
        wasted += max(0.0, refilled - capacity)  # refill that found the bucket full
        before = min(float(capacity), refilled)
        if abs(before - 1) > 1e-6:  # clear of float rounding at the threshold
            assert allowed == (before >= 1), (now, before, allowed)
        level, previous = before - allowed, now
        assert abs(level + neg_tokens) < 1e-6, (now, level, -neg_tokens)

    # Never more than the bucket could have held at any moment.
    for taken, now in enumerate(admitted, start=1):
        assert taken <= capacity + rate * (now - start) / 1_000_000 + 1e-9, (taken, now)
    # Every token is accounted for: what it started with plus the refill, less the refill
    # a full bucket turned away (processes descheduled for capacity / rate = 200 ms on a
    # loaded machine), less what is left at the end.
    expected = capacity + rate * (last - start) / 1_000_000 - wasted
    assert expected - level - 1e-6 <= len(admitted) <= expected - level + 1e-6
