"""Failovers under load behind Sentinel: what callers see, what survives, with and without WAIT.

8 processes (4 with ``WAIT_REPLICAS=1``, 4 without, on keys of their own) call atomicops
through the sentinels while the test runs ``SENTINEL FAILOVER``, then (last, since it
leaves fewer nodes) ``kill -9``s the primary twice. Callers see only typed errors, and
only while the primary changes; nothing is applied twice; the new primary, which has
none of the scripts, is met with the NOSCRIPT fallback. The writes a failover loses are
counted for each group and printed (docs/replication.md quotes them).
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

from tests.sentinel.conftest import configure
from tests.sentinel.load import Group, Load, tally

pytestmark = pytest.mark.slow

# What a caller may see while the primary changes: refused or unreachable (nothing
# applied), a lost reply (maybe applied), applied but not confirmed by the replicas, and
# what a failover may do to a lock it held (lost with the old primary).
SWITCH_ERRORS = {
    "RedisUnavailable",
    "ServerRefused",
    "OutcomeUnknown",
    "NotReplicated",
    "LockNotOwned",
}
RECOVERY_S = 3.0


def groups(sentinel_set) -> list[Group]:
    base = {
        "SENTINELS": sentinel_set.sentinel_addresses,
        "SERVICE": sentinel_set.service,
        "LOAD_ON_STARTUP": False,
        "STATS_FLUSH_INTERVAL": 0,
        "SOCKET_TIMEOUT": 2.0,
        "SOCKET_CONNECT_TIMEOUT": 0.5,
    }
    return [
        Group("nowait", base),
        Group("wait1", {**base, "WAIT_REPLICAS": 1, "WAIT_TIMEOUT_MS": 200}),
    ]


def check_errors(records, start: float, end: float) -> Counter:
    kinds: Counter = Counter()
    for record in records:
        for when, kind, message in record.errors:
            name = kind.partition(":")[2]
            assert name in SWITCH_ERRORS, (kind, message)
            assert start <= when <= end, (kind, message, when - start)
            kinds[kind] += 1
    return kinds


def line(t) -> str:
    return (
        f"{t.group}: ~{t.calls} calls, {t.acked} increments acknowledged, {t.unknown} unknown, "
        f"{t.unreplicated} NotReplicated, >= {t.lost} acknowledged lost; "
        f"{t.fallbacks} NOSCRIPT fallbacks; errors {dict(t.errors)}"
    )


def test_sentinel_failover_under_load(sentinel_set, atomic_sentinel, settings):
    configure(settings, sentinel_set)
    plan = groups(sentinel_set)
    with Load(plan) as load:
        time.sleep(1.0)
        started = time.time()
        old = sentinel_set.primary()
        sentinel_set.sentinels[0].command("SENTINEL", "FAILOVER", sentinel_set.service)
        new = sentinel_set.wait_promoted(old)
        promoted = time.time()
        sentinel_set.wait_healthy()  # until the old primary was told to replicate
        demoted = time.time()
        time.sleep(0.5)
        records = load.stop()
    check_errors(records, started - 0.2, demoted + RECOVERY_S)
    with new.client() as client:
        tallies = [tally(records, group, client) for group in plan]
    print(
        f"\n[{sentinel_set.kind}] SENTINEL FAILOVER {old.name} -> {new.name}: promoted "
        f"{promoted - started:.2f}s after, old primary demoted {demoted - promoted:.2f}s "
        f"after the promotion (accepting writes until then)\n  "
        + "\n  ".join(line(t) for t in tallies)
    )
    assert sum(t.fallbacks for t in tallies) > 0  # the new primary had none of the scripts
    assert all(t.acked > 0 for t in tallies)


def test_kill_9_of_the_primary_under_load(sentinel_set, atomic_sentinel, settings):
    """Two kills in a row (3 data nodes, then 2): the last test of the module."""
    configure(settings, sentinel_set)
    plan = groups(sentinel_set)
    totals: dict[str, int] = Counter()
    for run in range(2):
        sentinel_set.wait_healthy()
        sentinel_set.empty()
        with Load(plan) as load:
            time.sleep(0.8)
            killed = time.time()
            victim = sentinel_set.kill_primary()
            new = sentinel_set.wait_promoted(victim)
            promoted = time.time()
            time.sleep(1.0)
            records = load.stop()
        kinds = check_errors(records, killed - 0.5, promoted + RECOVERY_S)
        with new.client() as client:
            tallies = [tally(records, group, client) for group in plan]
        for t in tallies:
            totals[t.group] += t.lost
        before = [tok for r in records for when, tok in r.tokens if when < killed]
        after = [tok for r in records for when, tok in r.tokens if when > promoted]
        print(
            f"\n[{sentinel_set.kind}] kill -9 #{run + 1} of {victim.name}: {new.name} promoted "
            f"{promoted - killed:.2f}s later; errors {dict(kinds)}\n  "
            + "\n  ".join(line(t) for t in tallies)
            + f"\n  fencing tokens: {len(before)} before the kill, {len(after)} after the "
            "promotion"
        )
        # Tokens are max(last + 1, server TIME in us): even grants lost with the old
        # primary are below every grant of the new one.
        assert before and after and min(after) > max(before)
        assert sum(t.fallbacks for t in tallies) > 0
    print(f"\n[{sentinel_set.kind}] acknowledged increments lost over both kills: {dict(totals)}")
    assert totals["wait1"] <= totals["nowait"]
