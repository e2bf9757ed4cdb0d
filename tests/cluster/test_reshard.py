"""Slots moving under load: every call completes, the data is exact, redirects are counted.

The test moves a range of slots from one primary to another and back the way
``redis-cli --cluster reshard`` does (``SETSLOT IMPORTING/MIGRATING``, ``MIGRATE`` in
batches of 10 keys, ``SETSLOT NODE``), pausing while each slot is half-moved, while 8
processes call atomicops on keys of those slots and of others. Callers meet ASK (a key
already moved), TRYAGAIN (a two-key call whose keys are split) and MOVED (a slot done),
and never see any of them.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter

import pytest

from atomicops import Lock, ServerRefused, abatch, abounded_incr, batch
from atomicops.engine import topology
from atomicops.registry import ScriptRegistry
from tests.cluster.load import (
    PAIR_SOURCE,
    Load,
    Plan,
    cas_key,
    incr_key,
    pair_keys,
    tags_for,
    totals,
    window_key,
)

pytestmark = pytest.mark.slow

MOVING = 48  # slots moved there and back
FILL = 25  # extra keys per moving slot: each slot takes three MIGRATE batches
HALF_MOVED_S = 0.02  # how long each slot stays half-moved


def slot_range(cluster, node) -> range:
    spec = cluster.view()[node.node_id]["slots"][0]
    low, _, high = spec.partition("-")
    return range(int(low), int(high or low) + 1)


def check_exact(client, records, tags) -> None:
    """The final data is exactly what the replies said, for every key the workers used."""
    for tag in tags:
        values = sorted(v for r in records for _, v in r.incr.get(incr_key(tag), []))
        assert values == list(range(1, len(values) + 1)), tag  # no gap, nothing twice
        assert int(client.get(incr_key(tag)) or 0) == len(values), tag
        pairs = sum(r.pair[tag] for r in records)
        assert [int(client.get(k) or 0) for k in pair_keys(tag)] == [pairs, pairs], tag
        hits = sum(r.window[window_key(tag)] for r in records)
        assert int(client.get(window_key(tag)) or 0) == hits, tag
        tokens = [t for r in records for t in r.tokens.get(tag, [])]
        assert len(tokens) == len(set(tokens)), tag  # fencing tokens never handed out twice
    for record in records:
        assert record.cas_refused == 0
        for key, value in record.cas.items():
            assert int(client.get(key)) == value, key


def test_resharding_under_load(cluster, atomic_cluster):
    source, target = cluster.primaries()[:2]
    moving = list(slot_range(cluster, source))[:MOVING]
    outside = [slot_range(cluster, node)[-1] for node in cluster.primaries()]
    tag_of = tags_for(moving + outside)
    for slot in moving:
        atomic_cluster.mset({f"{{{tag_of[slot]}}}:fill:{i}": i for i in range(FILL)})
    tags = list(tag_of.values())
    started = time.monotonic()
    with Load(Plan(tags)) as load:
        time.sleep(1.0)
        there = cluster.move_slots(moving, source, target, lambda _: time.sleep(HALF_MOVED_S))
        time.sleep(0.3)
        back = cluster.move_slots(moving, target, source, lambda _: time.sleep(HALF_MOVED_S))
        time.sleep(0.5)
        records = load.stop()
    elapsed = time.monotonic() - started
    met = totals(records)
    calls = sum(r.rounds for r in records) * 4
    print(
        f"\n[{cluster.kind}] resharding {MOVING} slots there and back ({there}+{back} keys) "
        f"in {elapsed:.1f}s under 8 processes: ~{calls} calls, redirects met {met}, "
        f"errors {len([e for r in records for e in r.errors])}"
    )
    assert [e for r in records for e in r.errors][:5] == []
    check_exact(atomic_cluster, records, tags)
    assert met["ask"] > 0 and met["moved"] > 0  # the paths were taken
    assert met["exhausted"] == 0
    # All 8 took part in the half-moved windows: not a test of one lucky process.
    assert sum(1 for r in records if r.redirects.get("moved")) >= 4
    for record in records:
        assert cas_key(tags[0], record.worker) in record.cas


def test_a_waiter_blocked_on_a_moving_slot_is_woken_at_its_new_owner(cluster, atomic_cluster):
    source, target = cluster.primaries()[:2]
    slot = slot_range(cluster, source)[100]
    tag = tags_for([slot])[slot]
    holder = Lock(tag, ttl=30)
    assert holder.acquire()
    woken: list[float] = []

    def wait() -> None:
        with Lock(tag, ttl=30, timeout=20):
            woken.append(time.monotonic())

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.5)  # blocked in BLPOP on the source now
    moved_before = topology.redirects["moved"]
    cluster.move_slots([slot], source, target)
    time.sleep(0.5)  # the source unblocks it with MOVED; it waits on the target now
    released = time.monotonic()
    holder.release()  # runs on the target (MOVED on the way), pushes the wake-up there
    waiter.join(20)
    cluster.move_slots([slot], target, source)
    assert woken, "the waiter never got the lock"
    # Woken by the release, not by its BLPOP timing out (4 s) nor by the 30 s lease.
    assert woken[0] - released < 1.0
    assert topology.redirects["moved"] > moved_before


def test_a_call_that_keeps_meeting_tryagain_gives_up_unapplied(cluster, atomic_cluster):
    """A slot left half-moved: a two-key call cannot run anywhere, and says so in time.

    One key was migrated, the other does not exist: the source has neither (ASK), the
    target lacks one (TRYAGAIN), round after round. The ASKs are the migration, not a
    ping-pong: the call waits for the keys to come together for TRYAGAIN_BUDGET seconds,
    then gives up as TRYAGAIN, nothing applied.
    """
    source, target = cluster.primaries()[:2]
    slot = slot_range(cluster, source)[200]
    tag = tags_for([slot])[slot]
    first, second = pair_keys(tag)
    atomic_cluster.set(first, 0)
    pair = ScriptRegistry().register("stuck_pair", PAIR_SOURCE)
    with source.client() as src, target.client() as dst:
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target.node_id)
        src.execute_command("MIGRATE", "127.0.0.1", target.port, first, 0, 5000)
        try:
            started = time.monotonic()
            with pytest.raises(ServerRefused) as info:
                pair([first, second])
            took = time.monotonic() - started
        finally:
            for node in (dst, src):
                node.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target.node_id)
    cluster.move_slots([slot], target, source)
    assert info.value.code == "TRYAGAIN"
    assert topology.TRYAGAIN_BUDGET - 0.3 < took < topology.TRYAGAIN_BUDGET + 2
    assert atomic_cluster.get(first) == b"0" and atomic_cluster.exists(second) == 0
    met = dict(topology.redirects)
    assert met["exhausted"] == 1 and met["ask"] > topology.MAX_HOPS


async def test_async_calls_follow_a_reshard(cluster, atomic_cluster):
    """The same on redis.asyncio: 16 tasks, one event loop, the slots moved by a thread."""
    source, target = cluster.primaries()[:2]
    moving = list(slot_range(cluster, source))[MOVING : MOVING + 16]
    tags = list(tags_for(moving).values())
    for tag in tags:
        atomic_cluster.mset({f"{{{tag}}}:fill:{i}": i for i in range(FILL)})
    pair = ScriptRegistry().register("async_pair", PAIR_SOURCE)
    stop = asyncio.Event()
    values: dict[str, list[int]] = {tag: [] for tag in tags}
    pairs: Counter = Counter()
    tokens: dict[str, list[int]] = {tag: [] for tag in tags}

    async def work(index: int) -> None:
        rounds = 0
        while not stop.is_set():
            for tag in tags[index % len(tags) :] + tags[: index % len(tags)]:
                values[tag].append((await abounded_incr(incr_key(tag), 10**9)).value)
                a, b = await pair.acall(pair_keys(tag))
                assert a == b
                pairs[tag] += 1
                rounds += 1
                if rounds % 3 == 0:
                    async with Lock(tag, ttl=10, timeout=10) as lock:
                        tokens[tag].append(lock.fencing_token)

    tasks = [asyncio.create_task(work(i)) for i in range(16)]
    await asyncio.sleep(0.5)
    half_moved = lambda _: time.sleep(HALF_MOVED_S)  # noqa: E731
    await asyncio.to_thread(cluster.move_slots, moving, source, target, half_moved)
    await asyncio.to_thread(cluster.move_slots, moving, target, source, half_moved)
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.gather(*tasks)
    met = dict(topology.redirects)
    print(f"\n[{cluster.kind}] async resharding of 16 slots, 16 tasks: redirects met {met}")
    for tag in tags:
        assert sorted(values[tag]) == list(range(1, len(values[tag]) + 1))
        assert int(atomic_cluster.get(incr_key(tag))) == len(values[tag])
        assert [int(atomic_cluster.get(k)) for k in pair_keys(tag)] == [pairs[tag]] * 2
        assert len(tokens[tag]) == len(set(tokens[tag]))
    assert met["moved"] > 0 and met["ask"] > 0 and met["exhausted"] == 0


def test_batches_and_auto_pipelined_calls_follow_a_moving_slot(cluster, atomic_cluster, settings):
    """One planned call whatever carries it: a sync batch, an async batch and 8
    auto-pipelined async calls on a slot that is half-moved (ASK for the key that moved,
    the source still serves the other), then moved (MOVED), then after. Every call is
    applied exactly once and none of them sees a redirect."""
    source, target = cluster.primaries()[:2]
    slot = slot_range(cluster, source)[400]
    tag = tags_for([slot])[slot]
    moved, staying = f"{{{tag}}}:moved", f"{{{tag}}}:staying"
    atomic_cluster.set(moved, 0)
    atomic_cluster.set(staying, 0)
    settings.ATOMICOPS = {**settings.ATOMICOPS, "AUTO_PIPELINE": True}
    seen: dict[str, list[int]] = {moved: [], staying: []}

    async def async_calls() -> None:
        async with abatch() as b:
            pending = [(key, b.bounded_incr(key, 10**9)) for key in (moved, staying)]
        for key, result in pending:
            seen[key].append(result.result().value)
        keys = [moved, staying] * 4
        results = await asyncio.gather(*(abounded_incr(key, 10**9) for key in keys))
        for key, result in zip(keys, results, strict=True):
            seen[key].append(result.value)

    def every_carrier() -> None:
        with batch() as b:
            pending = [(key, b.bounded_incr(key, 10**9)) for key in (moved, staying)]
        for key, result in pending:
            seen[key].append(result.result().value)  # raises what the call met, if anything
        asyncio.run(async_calls())

    every_carrier()  # the slot where it was: the maps are read
    with source.client() as src, target.client() as dst:
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target.node_id)
        src.execute_command("MIGRATE", "127.0.0.1", target.port, moved, 0, 5000)
        asks = topology.redirects["ask"]
        every_carrier()  # half-moved: the moved key is asked for at the target
        assert topology.redirects["ask"] > asks
        src.execute_command("MIGRATE", "127.0.0.1", target.port, staying, 0, 5000)
        for node in cluster.primaries():
            with node.client() as client:
                client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target.node_id)
    moves = topology.redirects["moved"]
    every_carrier()  # moved: every client's map is stale once
    assert topology.redirects["moved"] > moves
    every_carrier()  # and after it
    cluster.move_slots([slot], target, source)
    for key, values in seen.items():
        assert sorted(values) == list(range(1, len(values) + 1)), key  # each applied once
        assert int(atomic_cluster.get(key)) == len(values) == 4 * 6, key
