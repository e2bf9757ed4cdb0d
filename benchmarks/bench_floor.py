"""Every primitive next to its anchor and to the floor: the same bytes on a raw socket.

Set up as a user has it: ``ATOMICOPS = {"URL": ...}`` and nothing else, so the default
settings apply (metrics on when prometheus_client is installed, as it is in the test
extra; auto-pipelining on). For each primitive:

* **floor**: the exact RESP the primitive wrote for one call (captured from the wire),
  written to a plain socket and its reply read, with no Python around it: the most any
  client in this process could reach for that command;
* **anchor**: what a user would write instead (raw redis-py ``evalsha`` of the same
  script, redis-py's ``Lock``, ``limits``' fixed window, raw ``redis.asyncio``);
* atomicops itself, as ratios to both, measured in interleaved rounds in one process
  (paired: each ratio is the median of per-round ratios).

Metrics on vs off: the same registered script with ``PROMETHEUS`` on and off, paired.
Run (``BENCH_N`` calls per round, ``BENCH_ROUNDS`` rounds)::

    .venv/bin/python benchmarks/bench_floor.py

Which reply parser redis-py uses is printed first: with ``pip install "atomicops[fast]"``
(hiredis) the figures move, and README quotes both.
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
from collections.abc import Callable

from _common import compare_rounds, paired, start_server

N = int(os.environ.get("BENCH_N", "10000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
TASKS = int(os.environ.get("BENCH_TASKS", "64"))
BIG = 2**50


def setup(url: str) -> None:
    import django
    from django.conf import settings

    settings.configure(
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "atomicops"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        ATOMICOPS={"URL": url},  # the defaults, as a user has them
        USE_TZ=True,
    )
    django.setup()


# -- the floor ------------------------------------------------------------------------


def _complete(buf: bytes, at: int = 0) -> int:
    """Where the RESP reply starting at ``at`` ends, or -1 when ``buf`` holds less."""
    end = buf.find(b"\r\n", at)
    if end < 0:
        return -1
    kind, head = buf[at : at + 1], buf[at + 1 : end]
    if kind in b"+-:,#_(":
        return end + 2
    if kind in b"$=!":
        size = int(head)
        if size < 0:
            return end + 2
        stop = end + 2 + size + 2
        return stop if len(buf) >= stop else -1
    if kind in b"*~>%|":
        count = int(head) * (2 if kind in b"%|" else 1)
        pos = end + 2
        for _ in range(max(count, 0)):
            pos = _complete(buf, pos)
            if pos < 0:
                return -1
        return pos
    raise ValueError(f"RESP type {kind!r}")


class Floor:
    """Replays captured command bytes on one raw socket, one round trip each."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def call(self, packets: list[bytes]) -> Callable[[], object]:
        sock = self.sock

        def replay() -> None:
            for packet in packets:
                sock.sendall(packet)
                buf = sock.recv(65536)
                while _complete(buf) < 0:
                    buf += sock.recv(65536)

        return replay


def captured(fn: Callable[[], object]) -> list[bytes]:
    """The bytes one call of ``fn`` wrote, one item per round trip."""
    from atomicops.engine import wire

    packets: list[bytes] = []
    real = wire.pack

    def recording(conn, batch):
        packed = real(conn, batch)
        packets.append(b"".join(packed))
        return packed

    wire.pack = recording
    try:
        fn()
    finally:
        wire.pack = real
    return packets


# -- the runs -------------------------------------------------------------------------


def show(title: str, rates: dict[str, list[float]], ours: str, anchor: str | None) -> None:
    floor = rates["floor"]
    print(f"\n{title}")
    for name, values in rates.items():
        line = f"  {name:<34} {statistics.median(values):>9,.0f}/s   of floor {paired(values, floor):.3f}"
        if anchor is not None and name != anchor:
            line += f"   vs {anchor}: {paired(values, rates[anchor]):.3f}"
        print(line)


def sync_part(url: str, port: int) -> None:
    import limits
    import redis
    from limits.storage import RedisStorage
    from limits.strategies import FixedWindowRateLimiter

    import atomicops
    from atomicops import Lock, registry
    from atomicops.primitives.keys import resolve_key

    raw = redis.Redis.from_url(url)
    floor = Floor(port)
    incr = registry.register("bench_incr", "return redis.call('INCR', KEYS[1])")
    incr_sha = raw.script_load(incr.source)
    bounded = registry.get("counter_bounded_incr")
    atomicops.bounded_incr("bi", BIG)  # loads every script on the server
    limiter = FixedWindowRateLimiter(RedisStorage(url))
    item = limits.RateLimitItemPerMinute(10**9)
    ours_lock = Lock("bench:lock", ttl=10)
    theirs_lock = raw.lock("bench:rlock", timeout=10)

    cases: list[tuple[str, str, Callable[[], object], str, Callable[[], object]]] = [
        ("registered script", "atomicops registered script", lambda: incr(["k"]),
         "raw redis-py evalsha", lambda: raw.evalsha(incr_sha, 1, "k")),
        ("bounded_incr", "atomicops bounded_incr", lambda: atomicops.bounded_incr("bi", BIG),
         "raw redis-py evalsha",
         lambda: raw.evalsha(bounded.sha, 1, resolve_key("bi"), BIG, 1, 0)),
        ("Lock acquire+release", "atomicops Lock",
         lambda: (ours_lock.acquire(), ours_lock.release()),
         "redis-py Lock", lambda: (theirs_lock.acquire(), theirs_lock.release())),
        ("fixed_window", "atomicops fixed_window",
         lambda: atomicops.fixed_window("fw", 10**9, 60_000),
         "limits FixedWindowRateLimiter", lambda: limiter.hit(item, "fw")),
        ("compare_and_set", "atomicops compare_and_set",
         # Both every time (an `or` skipped the delete whenever the set won, so the floor
         # captured one round trip where the loop made one or two).
         lambda: (atomicops.compare_and_set("cas", None, "v"), atomicops.compare_and_delete("cas", "v")),
         None, None),
        ("sliding_window", "atomicops sliding_window",
         lambda: atomicops.sliding_window("sw", 10**9, 60_000), None, None),
        ("exact_window", "atomicops exact_window",
         lambda: atomicops.exact_window("ew", 10**6, 1_000), None, None),
        ("token_bucket", "atomicops token_bucket",
         lambda: atomicops.token_bucket("tb", 10**9, 10**9), None, None),
    ]  # fmt: skip
    for title, ours_name, ours, anchor_name, anchor in cases:
        contenders: dict[str, Callable[[], object]] = {
            "floor": floor.call(captured(ours)),
            ours_name: ours,
        }
        if anchor is not None and anchor_name is not None:
            contenders[anchor_name] = anchor
        show(title, compare_rounds(contenders, N, ROUNDS), ours_name, anchor_name)

    # Metrics on vs off, paired: the settings switch between blocks.
    from django.test import override_settings

    on = {"URL": url}

    def with_metrics(enabled: bool) -> Callable[[], object]:
        def block() -> None:
            with override_settings(ATOMICOPS={**on, "PROMETHEUS": enabled}):
                for _ in range(N):
                    incr(["k"])

        return block

    rates = compare_rounds({"on": with_metrics(True), "off": with_metrics(False)}, 1, ROUNDS)
    print(
        f"\nmetrics on vs off (registered script, {N} calls a block): {paired(rates['on'], rates['off']):.3f}"
    )


async def _async_rate(url: str, tasks: int, raw: bool) -> float:
    import time

    import redis.asyncio

    import atomicops
    from atomicops.primitives.keys import resolve_key

    sha = atomicops.registry.get("counter_bounded_incr").sha
    key = resolve_key("abi")
    client = redis.asyncio.Redis.from_url(url)
    per_task = N // tasks

    async def worker() -> None:
        for _ in range(per_task):
            if raw:
                await client.evalsha(sha, 1, key, BIG, 1, 0)
            else:
                await atomicops.abounded_incr("abi", BIG)

    await asyncio.gather(*(worker() for _ in range(tasks)))  # warm: connections, scripts
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    rate = per_task * tasks / (time.perf_counter() - started)
    await client.aclose()
    return rate


def async_part(url: str) -> None:
    for tasks in (1, TASKS):
        rates: dict[str, list[float]] = {"abounded_incr": [], "raw redis.asyncio evalsha": []}
        for _ in range(ROUNDS):
            rates["abounded_incr"].append(asyncio.run(_async_rate(url, tasks, False)))
            rates["raw redis.asyncio evalsha"].append(asyncio.run(_async_rate(url, tasks, True)))
        ratio = paired(rates["abounded_incr"], rates["raw redis.asyncio evalsha"])
        print(
            f"\nasync, {tasks} task(s): abounded_incr {statistics.median(rates['abounded_incr']):,.0f}/s,"
            f" raw {statistics.median(rates['raw redis.asyncio evalsha']):,.0f}/s, ratio {ratio:.3f}"
        )


def main() -> None:
    server = start_server()
    try:
        setup(server.url)
        import redis
        from redis.utils import HIREDIS_AVAILABLE

        print(
            f"server {server.name} {server.version()}, redis-py {redis.__version__}, parser "
            f"{'hiredis' if HIREDIS_AVAILABLE else 'pure Python'}; {N} calls x {ROUNDS} "
            "interleaved rounds, medians and paired ratios"
        )
        sync_part(server.url, server.port)
        async_part(server.url)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
