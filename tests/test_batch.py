"""batch() / abatch(): many primitive calls, one round trip per server.

Round trips are counted at the wire (every Send the runner performs), and the server's
own ``INFO commandstats`` says how many script calls it ran.
"""

from __future__ import annotations

from dataclasses import asdict
from decimal import Decimal

import pytest
import redis

from atomicops import (
    BatchNotSent,
    CounterResult,
    DataError,
    InvalidInput,
    OutcomeUnknown,
    RedisUnavailable,
    abatch,
    aget_counter,
    batch,
    bounded_decr,
    bounded_incr,
    compare_and_delete,
    compare_and_set,
    fixed_window,
    get_counter,
    incr,
    incr_float,
    registry,
    reset_counter,
    sliding_window,
    token_bucket,
)
from tests.faultproxy import FaultProxy


def evalsha_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(v["calls"] for k, v in stats.items() if k in ("cmdstat_evalsha", "cmdstat_eval"))


def one_by_one(p: str) -> list:
    """The reference: each call made on its own."""
    return [
        bounded_incr(f"{p}:likes", 2),
        bounded_incr(f"{p}:likes", 2),
        bounded_incr(f"{p}:likes", 2),
        bounded_decr(f"{p}:stock", -1),
        incr(f"{p}:n", 5),
        incr_float(f"{p}:f", Decimal("0.1")),
        get_counter(f"{p}:n"),
        compare_and_set(f"{p}:k", None, "v"),
        compare_and_set(f"{p}:k", None, "w"),
        compare_and_delete(f"{p}:k", "v"),
        reset_counter(f"{p}:n"),
        fixed_window(f"{p}:rl", 2, 60_000),
        sliding_window(f"{p}:sw", 2, 60_000),
        token_bucket(f"{p}:tb", 5, 1.0),
    ]


def queue_all(b, p: str) -> list:
    return [
        b.bounded_incr(f"{p}:likes", 2),
        b.bounded_incr(f"{p}:likes", 2),
        b.bounded_incr(f"{p}:likes", 2),
        b.bounded_decr(f"{p}:stock", -1),
        b.incr(f"{p}:n", 5),
        b.incr_float(f"{p}:f", Decimal("0.1")),
        b.get_counter(f"{p}:n"),
        b.compare_and_set(f"{p}:k", None, "v"),
        b.compare_and_set(f"{p}:k", None, "w"),
        b.compare_and_delete(f"{p}:k", "v"),
        b.reset_counter(f"{p}:n"),
        b.fixed_window(f"{p}:rl", 2, 60_000),
        b.sliding_window(f"{p}:sw", 2, 60_000),
        b.token_bucket(f"{p}:tb", 5, 1.0),
    ]


def comparable(value):
    """A result without what names its key or depends on the clock's exact ms."""
    if hasattr(value, "retry_after_ms"):
        fields = asdict(value)
        for name in ("key", "reset_ms", "retry_after_ms"):
            fields.pop(name)
        return fields
    return value


def test_results_equal_the_same_calls_one_by_one(backend, sends):
    expected = [comparable(v) for v in one_by_one("single")]
    sends.clear()
    with batch() as b:
        pending = queue_all(b, "batched")
        assert not sends  # nothing goes out before the block ends
    assert len(sends) == 1
    assert [comparable(p.result()) for p in pending] == expected
    assert pending[2].result() == CounterResult(value=2, applied=False)


async def test_async_results_equal_the_sync_ones(backend, sends):
    expected = [comparable(v) for v in one_by_one("single")]
    # The async pool learns whether the server has EVALSHA_RO (fakeredis has not) on its
    # first read-only call, as every pool does; the batch's reads then go as they may.
    await aget_counter("warm")
    sends.clear()
    async with abatch() as b:
        pending = queue_all(b, "batched")
    assert len(sends) == 1
    assert [comparable(p.result()) for p in pending] == expected


def test_one_round_trip_and_each_call_runs_once_on_the_server(real_client, sends):
    bounded_incr("warm", 10, client=real_client)  # the pool's first call also loads the scripts
    before = evalsha_calls(real_client)
    sends.clear()
    with batch(client=real_client) as b:
        pending = [b.bounded_incr(f"c:{i}", 10) for i in range(10)]
    assert len(sends) == 1
    assert len(sends[0].commands) == 10  # the ten EVALSHA, nothing else
    # commandstats counts the INFO itself too, under info: only script calls are summed.
    assert evalsha_calls(real_client) - before == 10
    assert [p.result().value for p in pending] == [1] * 10


def test_noscript_recovery_is_one_more_round_trip(real_client, sends):
    with batch() as b:
        b.incr("n")
    real_client.script_flush()
    fallbacks = registry.get("counter_incr").stats.get("fallbacks")
    sends.clear()
    with batch() as b:
        first, second = b.incr("n"), b.incr("n", 2)
        hit = b.fixed_window("rl", 3, 1000)
    assert len(sends) == 2  # EVALSHA x3 -> NOSCRIPT x3; then SCRIPT LOADs + EVAL x3
    assert (first.result(), second.result(), hit.result().count) == (2, 4, 1)
    assert registry.get("counter_incr").stats.get("fallbacks") - fallbacks == 2
    sends.clear()
    with batch() as b:
        third = b.incr("n")
    assert (len(sends), third.result()) == (1, 5)  # loaded again: EVALSHA hits


def test_one_failing_call_leaves_the_others_alone(backend):
    _, client = backend
    client.hset("h", "f", "1")
    with batch() as b:
        before = b.incr("ok", 1)
        broken = b.bounded_incr("h", 10)
        after = b.compare_and_set("k", None, "v")
    with pytest.raises(DataError) as raised:
        broken.result()
    assert raised.value.key == "h" and raised.value.script == "counter_bounded_incr"
    assert before.result() == 1 and after.result() is True
    assert client.get("ok") == b"1"


def test_bad_input_raises_when_added_and_nothing_is_sent(backend, sends):
    sends.clear()
    with batch() as b:
        b.incr("fine")
        with pytest.raises(InvalidInput):
            b.bounded_incr("x", -1)
        with pytest.raises(InvalidInput):
            b.fixed_window("x", 1, 1000, amount=2)
        with pytest.raises(InvalidInput):
            b.script("counter_incr", keys="abc")
        with pytest.raises(InvalidInput):
            b.compare_and_set("k", None, None)
        assert not sends
    assert len(sends) == 1 and len(b) == 1


def test_result_before_sending_or_after_a_raising_block(backend, sends):
    _, client = backend
    with batch() as b:
        early = b.incr("n")
        with pytest.raises(BatchNotSent, match="when the with block ends"):
            early.result()
    assert early.result() == 1
    sends.clear()
    with pytest.raises(RuntimeError), batch() as b:
        lost = b.incr("n")
        raise RuntimeError("the view failed")
    with pytest.raises(BatchNotSent, match="block raised"):
        lost.result()
    assert not sends and client.get("n") == b"1"
    with pytest.raises(InvalidInput, match="already sent"):
        b.incr("n")


def test_registry_scripts_and_empty_batches(backend, sends):
    sends.clear()
    with batch():
        pass
    assert not sends
    with batch() as b:
        raw = b.script("counter_incr", keys=["s"], args=[3, 0])
        fields = b.script("ratelimit_fixed_window", keys=["w"], args=[1000, 1])
    assert raw.result() == 3
    assert fields.result()[0] == 1  # the script's converted reply, as registry calls give it


@pytest.mark.parametrize("deadline_ms", [0, 2000])
def test_lost_replies_make_every_write_outcome_unknown_and_nothing_is_resent(
    real_server, settings, deadline_ms
):
    raw = redis.Redis(port=real_server.port)
    with FaultProxy("127.0.0.1", real_server.port) as proxy:
        settings.ATOMICOPS = {
            "URL": proxy.url,
            "LOAD_ON_STARTUP": False,
            "SOCKET_TIMEOUT": 1,
            "RETRY_DEADLINE_MS": deadline_ms,
        }
        with batch() as b:  # loads the scripts, so the faulty batch is only the calls
            b.incr("warm")
        proxy.arm("drop")
        with batch() as b:
            writes = [b.incr("a"), b.bounded_incr("b", 5), b.compare_and_set("c", None, "v")]
            read = b.get_counter("a")
        assert proxy.wait_fired()
        for pending in writes:
            with pytest.raises(OutcomeUnknown) as raised:
                pending.result()
            assert raised.value.script is not None and raised.value.key in ("a", "b", "c")
        if deadline_ms:
            # A read whose reply was lost has no effect to repeat: it is sent again (after
            # the writes, which were applied) within the deadline.
            assert read.result() == 1
        else:
            with pytest.raises(RedisUnavailable):  # the read was in the lost round trip too
                read.result()
        # Applied once, never re-sent: the next batch sees each write exactly once.
        assert (raw.get("a"), raw.get("b"), raw.get("c")) == (b"1", b"1", b"v")
        with batch() as b:
            again = b.incr("a")
        assert again.result() == 2
    raw.close()


def test_abatch_needs_async_with(backend):
    with pytest.raises(TypeError, match="async with"), abatch():
        pass


def test_wait_replicas_ends_the_batch_and_each_write_says_not_replicated(real_server, settings):
    from atomicops import NotReplicated

    settings.ATOMICOPS = {
        "URL": real_server.url,
        "LOAD_ON_STARTUP": False,
        "STATS_FLUSH_INTERVAL": 0,
        "WAIT_REPLICAS": 1,
        "WAIT_TIMEOUT_MS": 10,
    }
    with batch() as b:  # a server without replicas: nobody acknowledges
        write = b.incr("w", 3)
        read = b.get_counter("w")
    with pytest.raises(NotReplicated) as raised:
        write.result()
    assert raised.value.result == 3 and raised.value.acked == 0  # it WAS applied
    assert read.result() == 3
