"""The checker on its own, no servers: known-good and known-bad histories, a long one, and
properties over generated histories (a sequential run is always linearizable; a corrupted
read in it is not)."""

from __future__ import annotations

import random
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.jepsen.checker import (
    check_counter,
    check_lock,
    check_register,
    linearizable,
    minimize,
    settle,
    wgl,
)
from tests.jepsen.history import Op


def op(p, f, value, output=None, start=0, end=1, type="ok", key="k"):
    return Op(p, f, key, value, type, output, start, end)


def read(p, v, start, end, key="k"):
    return op(p, "read", None, v, start, end, key=key)


def cas(p, expected, new, ok, start, end, key="k", type="ok"):
    return op(p, "cas", [expected, new], ok if type == "ok" else None, start, end, type, key)


# -- register: small known histories ---------------------------------------------------


def test_sequential_cas_and_reads_are_linearizable():
    history = [
        cas(0, None, 1, True, 0, 1),
        read(1, 1, 2, 3),
        cas(1, 1, 2, True, 4, 5),
        cas(0, 1, 3, False, 6, 7),
        read(0, 2, 8, 9),
    ]
    assert linearizable(history)
    assert check_register(history).valid


def test_concurrent_ops_may_take_either_order():
    # The read overlaps the CAS: it may see the value before or after it.
    before = [cas(0, None, 1, True, 0, 1), cas(0, 1, 2, True, 2, 6), read(1, 1, 3, 5)]
    after = [cas(0, None, 1, True, 0, 1), cas(0, 1, 2, True, 2, 6), read(1, 2, 3, 5)]
    assert linearizable(before) and linearizable(after)


def test_lost_update_is_not_linearizable():
    # Two CASes from the same value both succeed: one update overwrote the other.
    history = [
        cas(0, None, 1, True, 0, 1),
        cas(1, 1, 2, True, 2, 5),
        cas(2, 1, 3, True, 3, 6),
    ]
    assert not linearizable(history)
    verdict = check_register(history)
    assert not verdict.valid
    assert verdict.anomaly["kind"] == "not linearizable"
    assert len(verdict.anomaly["history"]) == 3  # all three are needed


def test_stale_read_is_not_linearizable():
    # The read starts after the CAS to 2 completed but returns the old value.
    history = [cas(0, None, 1, True, 0, 1), cas(0, 1, 2, True, 2, 3), read(1, 1, 4, 5)]
    assert not linearizable(history)
    # The same read overlapping the CAS is fine.
    assert linearizable([cas(0, None, 1, True, 0, 1), cas(0, 1, 2, True, 2, 5), read(1, 1, 4, 6)])


def test_read_of_a_value_never_written_is_not_linearizable():
    assert not linearizable([cas(0, None, 1, True, 0, 1), read(1, 7, 2, 3)])
    assert not linearizable([read(1, 7, 0, 1)])


def test_refused_cas_must_have_seen_another_value():
    assert not linearizable([cas(0, None, 1, True, 0, 1), cas(1, 1, 2, False, 2, 3)])
    assert linearizable([cas(0, None, 1, True, 0, 1), cas(1, 5, 2, False, 2, 3)])


def test_unknown_cas_may_have_applied_late():
    # p1's CAS never answered; a read long after sees its value: applied.
    applied = [cas(0, None, 1, True, 0, 1), cas(1, 1, 2, None, 2, None, type="info"),
               read(0, 1, 10, 11), read(0, 2, 20, 21)]  # fmt: skip
    assert linearizable(applied)
    # ...or it never applied: reads keep seeing 1.
    never = [cas(0, None, 1, True, 0, 1), cas(1, 1, 2, None, 2, None, type="info"),
             read(0, 1, 10, 11), read(0, 1, 20, 21)]  # fmt: skip
    assert linearizable(never)
    # But not before it was invoked.
    early = [cas(0, None, 1, True, 0, 1), read(0, 2, 2, 3),
             cas(1, 1, 2, None, 5, None, type="info")]  # fmt: skip
    assert not linearizable(early)
    # And not twice: after 2 was overwritten by 3, 2 cannot come back.
    twice = [cas(0, None, 1, True, 0, 1), cas(1, 1, 2, None, 2, None, type="info"),
             read(0, 2, 10, 11), cas(0, 2, 3, True, 12, 13), read(0, 2, 14, 15)]  # fmt: skip
    assert not linearizable(twice)


def test_failed_ops_and_unknown_reads_are_left_out():
    history = [
        cas(0, None, 1, True, 0, 1),
        cas(1, 1, 9, None, 2, 3, type="fail"),  # certainly not applied
        op(1, "read", None, None, 4, None, "info"),
        read(0, 1, 5, 6),
    ]
    assert linearizable(history)


def test_keys_are_checked_apart_and_the_anomaly_names_the_key():
    history = [
        cas(0, None, 1, True, 0, 1, key="a"),
        cas(0, None, 1, True, 0, 1, key="b"),  # the same value on another key: fine
        read(1, 1, 2, 3, key="a"),
        read(1, 5, 2, 3, key="b"),
    ]
    verdict = check_register(history)
    assert not verdict.valid and verdict.anomaly["key"] == "b"


def test_minimize_keeps_the_writers_of_what_is_read():
    # A long valid prefix, then a stale read: the witness is the stale read, the write
    # it read from and the write it missed, no more.
    history = []
    value, t = None, 0
    for i in range(1, 60):
        history.append(cas(i % 3, value, i, True, t, t + 1))
        history.append(read((i + 1) % 3, i, t + 2, t + 3))
        value, t = i, t + 4
    history.append(read(2, 30, t, t + 1))
    assert not linearizable(history)
    witness = minimize(history)
    assert not linearizable(witness)
    assert len(witness) <= 4
    assert any(o.f == "read" and o.output == 30 and o.start == t for o in witness)


def test_thousands_of_ops_finish_fast():
    # 4 keys, 8 processes, 4000 operations, overlapping in time, some unknown outcomes.
    history = concurrent_history(random.Random(7), ops=4000, processes=8, keys=4)
    started = time.monotonic()
    verdict = check_register(history)
    # No speed is asserted (a loaded CI machine); the time is printed for the record.
    print(f"4000 ops checked in {time.monotonic() - started:.2f}s: {verdict.stats}")
    assert verdict.valid
    # The same history with one read in the middle made stale is caught.
    index, target = next(
        (i, h) for i, h in enumerate(history[2000:], 2000) if h.f == "read" and h.output
    )
    history[index] = read(target.process, target.output - 1000, target.start, target.end,
                          target.key)  # fmt: skip
    assert not check_register(history).valid


def concurrent_history(rng: random.Random, ops: int, processes: int, keys: int) -> list[Op]:
    """A history produced by a linearizable register: each op takes effect at one
    instant (its linearization point) inside its [start, end] interval; a few are unknown."""
    values: dict[str, int | None] = {f"k{i}": None for i in range(keys)}
    clock = [0] * processes
    points = []  # (linearization point, process, start, end)
    for n in range(ops):
        p = rng.randrange(processes)
        start = clock[p] + rng.randint(1, 5)
        end = start + rng.randint(1, 40)
        clock[p] = end
        points.append((rng.randint(start, end), p, start, end, n))
    history = []
    for _point, p, start, end, n in sorted(points):
        key = f"k{rng.randrange(keys)}"
        current = values[key]
        choice = rng.random()
        if choice < 0.4:
            history.append(read(p, current, start, end, key))
        elif choice < 0.95:
            expected = current if rng.random() < 0.7 else rng.choice([None, n - 1])
            ok = expected == current
            if ok:
                values[key] = n
            history.append(cas(p, expected, n, ok, start, end, key))
        else:  # unknown outcome: applied here (it may as well not have been)
            if rng.random() < 0.5:
                values[key] = n
                history.append(cas(p, current, n, None, start, None, key, "info"))
            else:
                history.append(cas(p, -1, n, None, start, None, key, "info"))
    return history


# -- register: properties --------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 200), st.integers(1, 6), st.integers(1, 3))
def test_histories_of_a_linearizable_register_pass(seed, ops, processes, keys):
    history = concurrent_history(random.Random(seed), ops, processes, keys)
    assert check_register(history).valid


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32), st.integers(2, 120), st.data())
def test_a_sequential_history_with_a_corrupted_read_fails(seed, ops, data):
    # Sequential (no overlap): the only order is the real-time one, so a read changed to
    # a value the register did not hold at that moment must be caught.
    rng = random.Random(seed)
    history, value, held = [], None, []
    for i in range(ops):
        t = 10 * i
        if rng.random() < 0.5:
            history.append(read(0, value, t, t + 5))
        else:
            history.append(cas(1, value, i, True, t, t + 5))
            value = i
        held.append(value)
    history.append(read(0, value, 10 * ops, 10 * ops + 5))
    held.append(value)
    index = data.draw(st.sampled_from([i for i, h in enumerate(history) if h.f == "read"]))
    wrong = data.draw(st.sampled_from([v for v in [None, *range(ops)] if v != held[index]]))
    history[index] = read(0, wrong, 10 * index, 10 * index + 5)
    assert not linearizable(history)


# -- counter ---------------------------------------------------------------------------


def incr(p, value, applied, start, end, type="ok"):
    return op(p, "incr", 1, [value, applied] if type == "ok" else None, start, end, type, "c")


def test_counter_good_history():
    history = [incr(0, 1, True, 0, 2), incr(1, 2, True, 1, 3), incr(0, 3, True, 4, 5),
               incr(1, None, None, 6, None, "info"), incr(0, 3, False, 10, 11)]  # fmt: skip
    assert check_counter(history, final=3, limit=3).valid
    assert check_counter(history[:3], final=3, limit=5).valid


def test_counter_anomalies():
    lost = [incr(0, 1, True, 0, 2), incr(1, 1, True, 1, 3)]
    assert check_counter(lost, final=1, limit=9).anomaly["kind"] == "lost update"
    acked = [incr(0, 1, True, 0, 2), incr(1, 2, True, 1, 3)]
    assert check_counter(acked, final=1, limit=9).anomaly["kind"] == (
        "lost acknowledged increments"
    )
    assert check_counter(acked, final=3, limit=9).anomaly["kind"] == "invented increments"
    over = [incr(0, 1, True, 0, 2), incr(1, 2, True, 1, 3)]
    assert check_counter(over, final=2, limit=1).anomaly["kind"] == "limit crossed"
    early = [incr(0, 1, True, 0, 2), incr(1, 2, False, 1, 3)]
    assert check_counter(early, final=1, limit=5).anomaly["kind"] == "refused below the limit"
    stale = [incr(0, 2, True, 0, 2), incr(1, 1, True, 3, 4)]
    assert check_counter(stale, final=2, limit=5).anomaly["kind"] == "stale value"


# -- lock ------------------------------------------------------------------------------


def test_lock_good_log_and_a_fenced_off_holder():
    log = [(1, 0, "begin"), (1, 0, "end"), (2, 1, "begin"), (3, 0, "begin"), (3, 0, "end")]
    # p1 (token 2) was fenced off by token 3 before its end: safe, that is fencing.
    assert check_lock(log, []).valid


def test_lock_interleaving_and_token_reuse():
    interleaved = [(1, 0, "begin"), (1, 1, "begin"), (1, 0, "end"), (1, 1, "end")]
    verdict = check_lock(interleaved, [])
    assert not verdict.valid and verdict.anomaly["kind"] == "interleaved critical sections"
    reused = [(1, 0, "begin"), (1, 0, "end"), (1, 1, "begin"), (1, 1, "end")]
    verdict = check_lock(reused, [])
    assert not verdict.valid and verdict.anomaly["kind"] == "fencing token reused"


def test_wgl_reports_how_far_it_got():
    search = wgl([cas(0, None, 1, True, 0, 1), read(1, 1, 2, 3), read(1, 9, 4, 5)])
    assert not search.linearizable and len(search.longest) == 2 and search.stuck == 2


# -- unknown outcomes: settled first, then the full search -----------------------------


def test_settle_makes_observed_unknowns_ok_and_drops_the_others():
    history = [
        cas(0, None, 1, True, 0, 1),
        cas(1, 1, 2, None, 2, None, type="info"),  # observed below: it applied
        cas(2, 1, 3, None, 2, None, type="info"),  # never observed
        read(0, 2, 10, 11),
        cas(0, 2, 4, False, 12, 13),  # refused: left out
    ]
    settled = settle(history)
    assert [(o.value, o.type, o.end) for o in settled] == [
        ([None, 1], "ok", 1),
        ([1, 2], "ok", 11),  # completes when its first observer did
        (None, "ok", 11),
    ]
    assert check_register(history).valid is False  # the refused CAS saw 2 and said no


def test_a_refused_cas_is_checked_by_the_full_search():
    # Settled (refused CASes left out) this passes; in full the refusal is impossible.
    history = [cas(0, None, 1, True, 0, 1), cas(1, 1, 2, False, 2, 3)]
    assert wgl(settle(history)).linearizable
    verdict = check_register(history)
    assert verdict.valid is False and "settled" not in verdict.anomaly["description"]


def test_the_search_gives_no_verdict_past_its_budget():
    history = concurrent_history(random.Random(3), ops=300, processes=6, keys=1)
    verdict = check_register(history, budget=10)
    assert verdict.valid is None and verdict.anomaly["kind"] == "no verdict"
