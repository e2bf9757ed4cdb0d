"""Lock: owner and fencing tokens, release/extend by non-owners, blocking, async, listing."""

from __future__ import annotations

import pytest

from atomicops import InvalidInput
from atomicops.locks import LockInfo, list_locks, lock_key


def test_list_locks_reads_owner_token_and_ttl_by_bounded_scan(backend):
    kind, client = backend
    for name, token in [("b", 2), ("a{x}", 1), ("c", 3)]:
        client.hset(lock_key(name), mapping={"owner": f"o-{name}", "token": token})
        client.pexpire(lock_key(name), 10_000)
    client.set("atomicops:lock:{a}:fence", 1)  # the other keys of a lock are not listed
    client.rpush("atomicops:lock:{a}:wake", 1)
    client.set("atomicops:lock:{notahash}", "x")  # a foreign key matching the pattern
    infos = list_locks()
    assert [i.name for i in infos] == ["a{x}", "b", "c"]
    first = infos[0]
    assert isinstance(first, LockInfo)
    assert first.key == "atomicops:lock:{a%7Bx%7D}"
    assert (first.owner, first.fencing_token) == ("o-a{x}", 1)
    assert 0 < first.ttl_ms <= 10_000
    assert len(list_locks(limit=2)) == 2


def test_list_locks_rejects_a_bad_limit():
    with pytest.raises(InvalidInput):
        list_locks(limit=0)
