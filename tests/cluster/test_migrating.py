"""Scripts run whole on a slot that is being migrated away.

While a slot is MIGRATING, the source node runs a script only if every declared key
exists there (else it answers ASK), and then checks each command the script calls: a
command on a key that does not exist (any more) is refused mid-script with "Script
attempted to access a non local key", after the earlier commands were applied. So a
script must never touch a key after it may have removed it (DEL, or emptying a list,
hash or sorted set). These tests put the slot in that state, with every key present,
and run the paths of the built-in scripts that remove and then write: each must finish
and leave what it promises. (A CI run of the reshard test met this with the old
lock_release, which deleted the wake-up list and pushed to it: the lock was released and
the waiter never woken.)
"""

from __future__ import annotations

from contextlib import contextmanager

import pytest
from redis.crc import key_slot

from atomicops.scripts.registry import registry
from tests.cluster.load import tags_for
from tests.cluster.test_reshard import slot_range

pytestmark = pytest.mark.slow


def a_tag(cluster) -> str:
    """A hash tag whose slot the first primary serves (the keys are written before it moves)."""
    slot = slot_range(cluster, cluster.primaries()[0])[300]
    return tags_for([slot])[slot]


@contextmanager
def migrating(cluster, tag: str):
    """The tag's slot is MIGRATING from its owner to another primary, meanwhile."""
    source, target = cluster.primaries()[:2]
    slot = key_slot(tag.encode())
    with source.client() as src:
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target.node_id)
        try:
            yield
        finally:
            src.execute_command("CLUSTER", "SETSLOT", slot, "STABLE")


def test_lock_release_wakes_a_waiter(cluster, atomic_cluster):
    tag = a_tag(cluster)
    lock, wake = f"{{{tag}}}:lock", f"{{{tag}}}:wake"
    atomic_cluster.hset(lock, mapping={"owner": "me", "token": 7, "w": 1})
    atomic_cluster.rpush(wake, "1", "1")  # stale tokens: the release leaves exactly one
    with migrating(cluster, tag):
        assert registry.get("lock_release")([lock, wake], ["me", 1000]) == 1
    assert atomic_cluster.exists(lock) == 0
    assert atomic_cluster.lrange(wake, 0, -1) == [b"1"]


def test_get_or_set_claim_taken_over_after_a_store(cluster, atomic_cluster):
    tag = a_tag(cluster)
    claim = f"{{{tag}}}:claim"
    atomic_cluster.hset(claim, mapping={"done": 1, "w": 3})
    with migrating(cluster, tag):
        assert registry.get("getorset_claim")([claim], ["me", 5000, 1]) == [1]
    assert atomic_cluster.hgetall(claim) == {b"owner": b"me"}
    assert 0 < atomic_cluster.pttl(claim) <= 5000


def test_get_or_set_done_marks_the_value_fresh(cluster, atomic_cluster):
    tag = a_tag(cluster)
    claim = f"{{{tag}}}:claim"
    wake = f"{claim}:wake:me"
    atomic_cluster.hset(claim, mapping={"owner": "me", "w": 2})
    atomic_cluster.rpush(wake, "1")
    with migrating(cluster, tag):
        assert registry.get("getorset_done")([claim, wake], ["me", 1, 3000, 1000]) == 2
    assert atomic_cluster.hgetall(claim) == {b"done": b"1"}
    assert 0 < atomic_cluster.pttl(claim) <= 3000
    assert atomic_cluster.llen(wake) == 3


def test_semaphore_acquire_replaces_the_only_expired_holder(cluster, atomic_cluster):
    tag = a_tag(cluster)
    names = ("holders", "tokens", "fence", "wake")
    holders, tokens, fence, wake = keys = [f"{{{tag}}}:{name}" for name in names]
    atomic_cluster.zadd(holders, {"gone": 1})  # its lease ended long ago
    atomic_cluster.hset(tokens, "gone", 5)
    atomic_cluster.set(fence, 5)
    atomic_cluster.rpush(wake, "1")
    with migrating(cluster, tag):
        granted, token = registry.get("semaphore_acquire")(keys, ["me", 1, 10_000])
    assert granted == 1 and token > 5
    assert [m for m, _ in atomic_cluster.zrange(holders, 0, -1, withscores=True)] == [b"me"]
    assert atomic_cluster.hgetall(tokens) == {b"me": str(token).encode()}
    assert atomic_cluster.exists(wake) == 0  # the only slot is taken: nobody to wake


def test_exact_window_admits_when_every_run_has_left_the_window(cluster, atomic_cluster):
    # The only run is long gone: popping it first would delete the key before the LPUSH.
    tag = a_tag(cluster)
    log = f"{{{tag}}}:rl"
    atomic_cluster.rpush(log, "1000 2 2")
    with migrating(cluster, tag):
        reply = registry.get("ratelimit_exact_window")([log], [2, 1000, 1, 0])
    assert reply[:2] == [1, 1]  # admitted, one hit in the window
    [run] = atomic_cluster.lrange(log, 0, -1)
    assert run.split()[1:] == [b"1", b"3"]  # the new run, cum carried on
    assert 0 < atomic_cluster.pttl(log) <= 1000


def test_stacked_exact_window_admits_when_every_run_has_left_the_window(cluster, atomic_cluster):
    tag = a_tag(cluster)
    log = f"{{{tag}}}:rl"
    atomic_cluster.rpush(log, "1000 1 1")
    with migrating(cluster, tag):
        reply = registry.get("ratelimit_stack")([log], ["e", 2, 1000, 1])
    assert reply[:2] == [1, 1]
    assert atomic_cluster.llen(log) == 1
