"""Bad input that used to escape the error tree or change data (issue #11).

Each case raises :class:`InvalidInput` before anything is sent, and the keyspace is
unchanged afterwards; the Lua side refuses the same values before any write, for
callers that run the scripts directly.
"""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import User

from atomicops import (
    InvalidInput,
    Lock,
    Semaphore,
    bounded_decr,
    bounded_incr,
    compare_and_set,
    incr,
    incr_float,
    registry,
)
from atomicops.leases.locks import lock_key
from atomicops.primitives.validate import MAX_LEASE_MS

HUGE_TTLS = [1e308, 2**53, 10**400, timedelta.max]


def keyspace(client) -> dict[bytes, bytes | None]:
    return {key: client.dump(key) for key in client.scan_iter()}


@pytest.mark.parametrize("ttl", HUGE_TTLS, ids=repr)
@pytest.mark.parametrize(
    "call",
    [
        lambda ttl: bounded_incr("c", 10, ttl=ttl),
        lambda ttl: bounded_decr("c", 0, ttl=ttl),
        lambda ttl: incr("c", ttl=ttl),
        lambda ttl: incr_float("c", 1.5, ttl=ttl),
        lambda ttl: compare_and_set("c", None, "v", ttl=ttl),
    ],
    ids=["bounded_incr", "bounded_decr", "incr", "incr_float", "compare_and_set"],
)
def test_a_huge_ttl_is_invalid_input_and_changes_nothing(backend, call, ttl):
    _, client = backend
    client.set("other", "1")
    before = keyspace(client)
    with pytest.raises(InvalidInput, match="too large"):
        call(ttl)
    assert keyspace(client) == before


@pytest.mark.parametrize("ttl", [2**53, 1e14, MAX_LEASE_MS / 1000 + 1, 10**400, 1e308])
def test_a_lease_too_long_for_the_scripts_is_refused_before_anything_is_written(backend, ttl):
    _, client = backend
    refused = "too long|finite"
    with pytest.raises(InvalidInput, match=refused):
        Lock("report", ttl=ttl)
    with pytest.raises(InvalidInput, match=refused):
        Semaphore("pool", 2, ttl=ttl)
    lock = Lock("report", ttl=10)
    with lock:
        with pytest.raises(InvalidInput, match=refused):
            lock.extend(ttl)
        assert 0 < client.pttl(lock.key) <= 10_000  # the lease was left as it was
    assert keyspace(client).keys() <= {f"{lock.key}:fence".encode()}


def test_the_longest_lease_is_accepted_and_expires(backend):
    _, client = backend
    with Lock("report", ttl=MAX_LEASE_MS / 1000) as lock:
        assert client.pttl(lock.key) > 2**51


@pytest.mark.parametrize("ttl_ms", [2**53, 2**52 + 1, "1e17"])
def test_the_acquire_script_checks_the_lease_before_any_write(backend, ttl_ms):
    """Run directly (no Python validation): the script refuses before INCR and HSET."""
    _, client = backend
    acquire = registry.get("lock_acquire")
    with pytest.raises(InvalidInput, match="ttl_ms"):
        acquire(keys=["l", "l:fence"], args=["me", ttl_ms, 0])
    assert keyspace(client) == {}


def test_a_semaphore_limit_beyond_lua_integers_is_invalid_input(backend):
    _, client = backend
    with pytest.raises(InvalidInput, match="limit"):
        Semaphore("pool", 2**64, ttl=10)
    with pytest.raises(InvalidInput, match="limit"):
        registry.get("semaphore_acquire")(
            keys=["s", "s:tokens", "s:fence", "s:wake"], args=["me", 2**64, 1000]
        )
    assert keyspace(client) == {}


def test_lock_names_from_pairs_cannot_collide_with_each_other_or_plain_names(db):
    names = [
        (User(pk="1:a"), "b"),
        (User(pk=1), "a:b"),
        "auth.user:1:a:b",
        "auth.user:1:a%3Ab",  # a plain name cannot spell a pair's escaped ':'
    ]
    keys = [lock_key(name) for name in names]
    assert len(set(keys)) == len(keys), keys
    assert [Lock(name, ttl=1).key for name in names] == keys
    # Without a ':' in its parts, a pair is the plain name it reads as (documented).
    assert lock_key((User(pk=1), "a%3Ab")) == lock_key("auth.user:1:a%3Ab")


def test_pair_locks_are_really_separate_on_the_server(backend):
    first = Lock((User(pk="1:a"), "b"), ttl=10)
    second = Lock((User(pk=1), "a:b"), ttl=10)
    plain = Lock("auth.user:1:a:b", ttl=10)
    assert first.acquire(blocking=False)
    assert second.acquire(blocking=False)
    assert plain.acquire(blocking=False)
    assert first.name == second.name == plain.name == "auth.user:1:a:b"  # shown alike


@pytest.mark.parametrize("value", [Decimal("NaN"), Decimal("sNaN"), Decimal("Infinity")])
def test_a_non_finite_decimal_is_refused_like_a_non_finite_float(backend, value):
    _, client = backend
    with pytest.raises(InvalidInput, match="finite"):
        compare_and_set("k", None, value)
    with pytest.raises(InvalidInput, match="finite"):
        compare_and_set("k", value, "v")
    assert keyspace(client) == {}


def test_fence_keys_do_not_outlive_their_locks_and_tokens_still_increase(backend):
    """No key per name is left behind, and the clock floor keeps the promise after expiry."""
    _, client = backend
    tokens = []
    for name in ("a", "b", "a"):
        with Lock(name, ttl=0.05) as lock:
            tokens.append(lock.fencing_token)
    with Semaphore("a", 1, ttl=0.05) as sem:
        tokens.append(sem.fencing_token)
    # Every key left has an expiry (the semaphore's wake-up list stays WAKE_TTL_MS).
    assert all(client.pttl(key) > 0 for key in client.scan_iter())
    deadline = time.monotonic() + 5
    while any(b":lock:" in key for key in keyspace(client)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(b":lock:" in key for key in keyspace(client))  # the fence keys expired
    with Lock("a", ttl=1) as lock:
        assert lock.fencing_token > max(tokens)
    assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens)
