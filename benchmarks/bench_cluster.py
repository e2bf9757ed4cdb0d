"""bounded_incr on a 3-primary cluster vs redis-py's RedisCluster.evalsha of the same script.

Same keys (spread over every primary), same script, rounds interleaved; target: atomicops
at least 0.95 of redis-py's rate. Also the cost of one slot-map refresh (what a MOVED
costs a process once, besides the refused round trip) and of a call that meets a MOVED.
Starts its own cluster (3 primaries, no replicas) on free ports. Run:
    .venv/bin/python benchmarks/bench_cluster.py
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time

from _common import compare_rounds, paired, report, setup_django

N = int(os.environ.get("BENCH_N", "5000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "7"))
TASKS = 64
LIMIT = 2**53 - 1
KEYS = [f"bench:{i}" for i in range(64)]


def ms(seconds: list[float]) -> str:
    return f"median {statistics.median(seconds) * 1000:.2f} ms (min {min(seconds) * 1000:.2f})"


def main() -> None:
    from tests.cluster.harness import TestCluster
    from tests.servers import redis_server_binary

    binary = os.environ.get("BENCH_SERVER_BINARY") or redis_server_binary()
    if not binary:
        raise SystemExit("redis-server not found on PATH")
    cluster = TestCluster(binary, "bench", replicas=0).start()
    try:
        run(cluster)
    finally:
        cluster.remove()


def run(cluster) -> None:
    setup_django(cluster.startup_url, atomicops={"CLUSTER": True})
    import redis.asyncio.cluster
    import redis.cluster
    from redis.crc import key_slot

    from atomicops import abounded_incr, bounded_incr, registry
    from atomicops.engine import compat, connection, topology
    from atomicops.engine.ops import Refresh

    script = registry.get("counter_bounded_incr")
    client = connection.get_client()  # atomicops' own RedisCluster, from the settings
    registry.load_all()
    # The same timeouts as atomicops' own clients (its defaults): redis.asyncio pays for
    # a timeout on every read and write, so leaving them off would not compare the same.
    same = {"socket_timeout": 5.0, "socket_connect_timeout": 2.0}
    theirs = redis.cluster.RedisCluster.from_url(cluster.startup_url, **same)
    assert {theirs.get_node_from_key(k).port for k in KEYS} == {n.port for n in cluster.nodes}
    cycle = {"i": 0}

    def next_key() -> str:
        cycle["i"] = (cycle["i"] + 1) % len(KEYS)
        return KEYS[cycle["i"]]

    rates = compare_rounds(
        {
            "redis-py RedisCluster.evalsha": lambda: theirs.evalsha(
                script.sha, 1, next_key(), LIMIT, 1, 0
            ),
            "atomicops bounded_incr": lambda: bounded_incr(next_key(), LIMIT),
        },
        N,
        ROUNDS,
    )
    version = cluster.nodes[0].command("INFO", "server")["redis_version"]
    print(
        f"3-primary cluster, redis-server {version}, {N} calls x {ROUNDS} interleaved rounds, "
        f"{len(KEYS)} keys on every primary"
    )
    medians = {name: statistics.median(values) for name, values in rates.items()}
    report("bounded_incr vs RedisCluster.evalsha (sync)", medians, "redis-py RedisCluster.evalsha")
    ratio = paired(rates["atomicops bounded_incr"], rates["redis-py RedisCluster.evalsha"])
    print(f"\natomicops / redis-py = {ratio:.3f} paired (target >= 0.95)")

    async def async_rates() -> dict[str, float]:
        mine = connection.get_async_client()
        other = redis.asyncio.cluster.RedisCluster.from_url(cluster.startup_url, **same)
        await other.initialize()

        async def burst(call) -> float:
            async def task(offset: int) -> None:
                for i in range(N // TASKS):
                    await call(KEYS[(offset + i) % len(KEYS)])

            started = time.perf_counter()
            await asyncio.gather(*(task(t) for t in range(TASKS)))
            return (N // TASKS) * TASKS / (time.perf_counter() - started)

        contenders = {
            "redis.asyncio RedisCluster.evalsha": lambda k: other.evalsha(
                script.sha, 1, k, LIMIT, 1, 0
            ),
            "atomicops abounded_incr": lambda k: abounded_incr(k, LIMIT),
        }
        found: dict[str, list[float]] = {name: [] for name in contenders}
        for call in contenders.values():
            await burst(call)  # warm up: connections per node
        for _ in range(ROUNDS):
            for name, call in contenders.items():
                found[name].append(await burst(call))
        await other.aclose()
        await mine.aclose()
        return found

    arates = asyncio.run(async_rates())
    amedians = {name: statistics.median(values) for name, values in arates.items()}
    report(f"async, {TASKS} concurrent tasks", amedians, "redis.asyncio RedisCluster.evalsha")
    aratio = paired(arates["atomicops abounded_incr"], arates["redis.asyncio RedisCluster.evalsha"])
    print(f"\nasync atomicops / redis.asyncio = {aratio:.3f} paired")

    # One slot-map refresh: CLUSTER SLOTS through NodesManager.initialize, what a MOVED
    # (or a primary that cannot be reached) costs a process before the call is resent.
    refreshes = []
    for _ in range(50):
        started = time.perf_counter()
        topology.refresh(Refresh(client))
        refreshes.append(time.perf_counter() - started)
    # A call that meets a MOVED: the map made stale for its slot, then one bounded_incr
    # (refused round trip + refresh + the call where MOVED pointed).
    key = KEYS[0]
    slot = key_slot(key.encode())
    owner = compat.cluster_slot_node(client, slot)
    other_node = next(n for n in compat.cluster_primary_nodes(client) if n.name != owner.name)
    normal, moved = [], []
    for _ in range(50):
        started = time.perf_counter()
        bounded_incr(key, LIMIT)
        normal.append(time.perf_counter() - started)
        client.nodes_manager.slots_cache[slot] = [other_node]
        before = topology.redirects["moved"]
        started = time.perf_counter()
        bounded_incr(key, LIMIT)
        moved.append(time.perf_counter() - started)
        assert topology.redirects["moved"] == before + 1
    print("\nslot map")
    print(f"  one refresh (CLUSTER SLOTS, 3 primaries)   {ms(refreshes)}")
    print(f"  bounded_incr, map right                    {ms(normal)}")
    print(f"  bounded_incr meeting a MOVED               {ms(moved)}")
    theirs.close()


if __name__ == "__main__":
    main()
