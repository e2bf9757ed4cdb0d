"""scan_locks: the lock listing bounded by work (SCAN calls, keys read, time), not by locks."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest
import redis

from atomicops import InvalidInput, Lock, LockScan, list_locks, scan_locks
from atomicops.leases import locks as locks_module
from atomicops.leases.locks import (
    STOPPED_AT_LIMIT,
    STOPPED_BY_KEYS,
    STOPPED_BY_SCAN_CALLS,
    STOPPED_BY_TIME,
)


def commandstats(client: redis.Redis) -> dict[str, int]:
    """Calls per command on a real server, e.g. {'scan': 3, 'hmget': 10}."""
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): v["calls"] for name, v in stats.items()}


def fill(client, keys: list[str]) -> None:
    for start in range(0, len(keys), 5000):
        client.mset(dict.fromkeys(keys[start : start + 5000], "x"))


def test_a_small_keyspace_is_listed_completely(backend):
    kind, client = backend
    held = [Lock(name, ttl=10) for name in ("b", "a", "c")]
    for lock in held:
        assert lock.acquire()
    client.set("atomicops:lock:{notahash}", "x")  # matches the pattern, is no lock
    scan = scan_locks()
    assert isinstance(scan, LockScan)
    assert [info.name for info in scan.locks] == ["a", "b", "c"]
    assert scan.stopped_by is None and not scan.cut
    assert scan.keys_read == 4 and scan.scan_calls >= 1 and scan.elapsed_ms >= 0
    assert [(i.key, i.owner, i.fencing_token) for i in list_locks()] == [
        (i.key, i.owner, i.fencing_token) for i in scan.locks
    ]  # the same listing, unbounded (TTLs move on between the two)


def test_the_limit_cuts_the_list_and_says_so(backend):
    for name in "abcde":
        Lock(name, ttl=10).acquire()
    scan = scan_locks(limit=2)
    assert len(scan.locks) == 2
    assert scan.cut and scan.stopped_by is STOPPED_AT_LIMIT
    assert scan.stopped_by.reason == "the limit of locks to list was reached"


def test_matching_keys_that_are_not_locks_are_read_up_to_max_keys(backend):
    kind, client = backend
    fill(client, [f"atomicops:lock:{{foreign{i}}}" for i in range(300)])
    if kind != "fakeredis":
        client.config_resetstat()
    scan = scan_locks(max_keys=50)
    assert scan.locks == () and scan.stopped_by is STOPPED_BY_KEYS
    assert scan.keys_read == 50
    if kind != "fakeredis":
        calls = commandstats(client)
        assert calls["hmget"] == calls["pttl"] == 50
        assert calls["scan"] == scan.scan_calls


def test_a_large_keyspace_without_locks_stops_after_max_scan_calls(real_client):
    fill(real_client, [f"other:{i}" for i in range(20_000)])
    real_client.config_resetstat()
    scan = scan_locks(max_scan_calls=3)
    assert scan.locks == () and scan.stopped_by is STOPPED_BY_SCAN_CALLS
    assert scan.scan_calls == 3 == commandstats(real_client)["scan"]
    assert "hmget" not in commandstats(real_client)
    # Unbounded, it walks the whole keyspace (20,000 keys in pages of about 1000).
    assert list_locks() == []
    assert commandstats(real_client)["scan"] >= 3 + 15


def test_time_is_bounded_between_round_trips(backend, monkeypatch):
    kind, client = backend
    fill(client, [f"atomicops:lock:{{foreign{i}}}" for i in range(3000)])
    ticks = itertools.count(0, 0.6)  # every look at the clock: 0.6 s later
    monkeypatch.setattr(locks_module, "time", SimpleNamespace(monotonic=lambda: next(ticks)))
    scan = scan_locks(max_seconds=1.0)
    assert scan.stopped_by is STOPPED_BY_TIME and scan.cut
    assert scan.scan_calls <= 2


@pytest.mark.parametrize(
    "kwargs",
    [
        {"limit": 0},
        {"max_scan_calls": 0},
        {"max_keys": True},
        {"max_seconds": 0},
        {"max_seconds": float("nan")},
        {"max_seconds": "1"},
    ],
)
def test_bad_bounds_are_refused_before_anything_is_sent(kwargs):
    with pytest.raises(InvalidInput, match="scan_locks"):
        scan_locks(**kwargs)


def test_no_bound_is_an_explicit_none(backend):
    Lock("x", ttl=10).acquire()
    scan = scan_locks(max_scan_calls=None, max_keys=None, max_seconds=None)
    assert [info.name for info in scan.locks] == ["x"] and not scan.cut
