"""Compare-and-set / compare-and-delete on redis, valkey and fakeredis: the seed table,
"only if absent", TTL handling, value encodings, typed errors with the key unchanged."""

from __future__ import annotations

import math
from datetime import timedelta
from decimal import Decimal

import pytest

from atomicops import (
    DataError,
    InvalidInput,
    acompare_and_delete,
    acompare_and_set,
    compare_and_delete,
    compare_and_set,
    registry,
)
from atomicops.primitives import cas


def test_seed_table(backend):
    _, client = backend
    assert client.set("mykey", "oldvalue")
    assert compare_and_set("mykey", "oldvalue", "newvalue") is True
    assert client.get("mykey") == b"newvalue"
    assert compare_and_set("mykey", "oldvalue", "newvalue") is False
    assert client.get("mykey") == b"newvalue"


async def test_seed_table_async(backend):
    _, client = backend
    client.set("mykey", "oldvalue")
    assert await acompare_and_set("mykey", "oldvalue", "newvalue") is True
    assert client.get("mykey") == b"newvalue"
    assert await acompare_and_set("mykey", "oldvalue", "newvalue") is False


def test_mismatch_changes_nothing(backend):
    _, client = backend
    client.set("k", "a", px=50_000)
    assert compare_and_set("k", "b", "c", ttl=1) is False
    assert client.get("k") == b"a"
    assert client.pttl("k") > 1_000  # the TTL of a refused call was not applied
    assert compare_and_set("missing", "a", "b") is False
    assert client.exists("missing") == 0


def test_expected_none_means_only_if_absent(backend):
    _, client = backend
    assert compare_and_set("k", None, "first") is True
    assert compare_and_set("k", None, "second") is False
    assert client.get("k") == b"first"


def test_empty_string_is_a_value_not_absence(backend):
    _, client = backend
    assert compare_and_set("k", "", "x") is False  # missing is not ""
    assert client.exists("k") == 0
    client.set("k", "")
    assert compare_and_set("k", None, "x") is False  # "" exists
    assert compare_and_set("k", "", "x") is True
    assert client.get("k") == b"x"


def test_ttl_none_keeps_the_ttl_and_ttl_given_replaces_it(backend):
    _, client = backend
    client.set("k", "a", px=50_000)
    assert compare_and_set("k", "a", "b")
    assert 0 < client.pttl("k") <= 50_000  # KEEPTTL
    assert compare_and_set("k", "b", "c", ttl=timedelta(seconds=2))
    assert 1_000 < client.pttl("k") <= 2_000
    client.set("plain", "a")
    assert compare_and_set("plain", "a", "b")
    assert client.pttl("plain") == -1
    assert compare_and_set("new", None, "v", ttl=60)
    assert 59_000 <= client.pttl("new") <= 60_000
    assert compare_and_set("new2", None, "v")
    assert client.pttl("new2") == -1


def test_values_are_compared_as_stored_bytes(backend):
    _, client = backend
    client.set("k", b"\xff\x00bin")
    assert compare_and_set("k", b"\xff\x00bin", 7)
    assert client.get("k") == b"7"
    assert compare_and_set("k", 7, 1.5)  # int sent as "7"
    assert client.get("k") == b"1.5"
    assert compare_and_set("k", "1.5", Decimal("2.50"))  # float sent as its repr
    assert compare_and_set("k", Decimal("2.5"), "x") is False  # "2.50" is not "2.5"
    assert compare_and_set("k", "2.50", "héllo")
    assert client.get("k") == "héllo".encode()
    assert compare_and_set("k", "héllo", "done")


def test_compare_and_delete(backend):
    _, client = backend
    client.set("k", "token-1")
    assert compare_and_delete("k", "token-2") is False
    assert client.get("k") == b"token-1"
    assert compare_and_delete("k", "token-1") is True
    assert client.exists("k") == 0
    assert compare_and_delete("k", "token-1") is False


async def test_compare_and_delete_async(backend):
    _, client = backend
    client.set("k", "7")
    assert await acompare_and_delete("k", 8) is False
    assert await acompare_and_delete("k", 7) is True
    assert client.exists("k") == 0


@pytest.mark.django_db
def test_model_instance_key(backend):
    from atomicops import key_for
    from tests.factories import ArticleFactory

    _, client = backend
    article = ArticleFactory()
    assert compare_and_set((article, "state"), None, "draft")
    assert compare_and_set((article, "state"), "draft", "published")
    assert client.get(key_for(article, "state")) == b"published"
    assert compare_and_delete((article, "state"), "published")


# -- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda: compare_and_set("l", "a", "b"),
        lambda: compare_and_set("l", None, "b"),
        lambda: compare_and_delete("l", "a"),
    ],
    ids=["set", "set-if-absent", "delete"],
)
def test_key_of_the_wrong_type(backend, call):
    _, client = backend
    client.rpush("l", "a")
    with pytest.raises(DataError, match="on key 'l'.*non-string") as caught:
        call()
    assert caught.value.key == "l"
    assert client.lrange("l", 0, -1) == [b"a"]


async def test_key_of_the_wrong_type_async(backend):
    _, client = backend
    client.hset("h", "f", "v")
    with pytest.raises(DataError, match="on key 'h'"):
        await acompare_and_set("h", "a", "b")
    with pytest.raises(DataError, match="on key 'h'"):
        await acompare_and_delete("h", "a")
    assert client.hgetall("h") == {b"f": b"v"}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: compare_and_set("k", "a", None), "use compare_and_delete"),
        (lambda: compare_and_set("k", True, "b"), "expected must be str"),
        (lambda: compare_and_set("k", "a", ["b"]), "new must be str"),
        (lambda: compare_and_set("k", "a", math.nan), "new must be finite"),
        (lambda: compare_and_set("k", "a", "b", ttl=0), "ttl must be"),
        (lambda: compare_and_set("k", "a", "b", ttl=-3), "ttl must be"),
        (lambda: compare_and_delete("k", None), "needs the value"),
        (lambda: compare_and_delete("k", {"a": 1}), "expected must be str"),
    ],
)
def test_bad_arguments_are_rejected_before_sending(backend, call, message):
    _, client = backend
    client.set("k", "a")
    before = registry.get(cas.CAS_SET).stats["calls"], registry.get(cas.CAS_DELETE).stats["calls"]
    with pytest.raises(InvalidInput, match=message) as caught:
        call()
    assert caught.value.key == "k"
    after = registry.get(cas.CAS_SET).stats["calls"], registry.get(cas.CAS_DELETE).stats["calls"]
    assert after == before
    assert client.get("k") == b"a"


def test_script_validates_its_ttl(backend):
    _, client = backend
    client.set("k", "a")
    with pytest.raises(InvalidInput, match="ttl_ms must be an integer"):
        registry.get(cas.CAS_SET)(keys=["k"], args=["b", "-1", "a"])
    assert client.get("k") == b"a"
