"""A batch over Upstash's REST API: its one Send is one HTTP request (#17)."""

from __future__ import annotations

from atomicops import batch


def test_a_batch_is_one_request(rest_settings, rest, direct):
    with batch() as b:  # the first call on a client also carries the SCRIPT LOADs
        b.incr("warm")
    rest.clear()
    with batch() as b:
        counted = b.bounded_incr("n", 5, 2)
        fresh = b.compare_and_set("k", None, "v")
        hit = b.fixed_window("rl", 3, 60_000)
    # One request. (SCRIPT LOADs ride along when the registry changed since the warm-up:
    # in the full suite another test's registration can come in between.)
    [names] = rest.names()
    assert [name for name in names if name != "SCRIPT LOAD"] == ["EVALSHA"] * 3
    assert (counted.result().value, fresh.result(), hit.result().count) == (2, True, 1)
    assert (direct.get("n"), direct.get("k")) == (b"2", b"v")
    direct.script_flush()
    rest.clear()
    with batch() as b:
        again = b.incr("n")
    assert again.result() == 3  # NOSCRIPT, then SCRIPT LOAD + EVAL: one more request
    assert len(rest.names()) == 2 and rest.names()[1][-1] == "EVAL"
