"""Rate-limit hits over Upstash's REST API: atomicops vs upstash-ratelimit, same server.

Both go through the local REST server of the tests (``tests/upstash/server.py``: the
Upstash REST protocol in front of the redis-server started for the run; in a process of
its own), one HTTP request at a time, keep-alive:

* ``atomicops.fixed_window`` on its own REST client (``ATOMICOPS["REST_URL"]``), and on
  an ``upstash_redis.Redis`` passed as ``client=`` (its URL, token and session);
* upstash-ratelimit's ``Ratelimit(limiter=FixedWindow(...)).limit`` on
  ``upstash_redis.Redis`` (the SDK's own limiter: ``EVAL`` with the script's body on
  every hit). Its script starts ``#!lua flags=allow-key-locking``, a flag of Upstash's
  server that redis-server 7.0 refuses; the bench runs it with a bare ``#!lua`` line,
  which changes nothing else.

Printed: hits per second (median of interleaved rounds), HTTP requests per hit and
request-body bytes per hit (counted by the REST server), the client's CPU time per hit,
and requests per ``bounded_incr``
and per ``Lock`` acquire + release. The absolute rates are mostly the local server's
Python; the ratio and the request counts are the figures. Target: one request per hit
and at least upstash-ratelimit's rate. Run:
    .venv/bin/python benchmarks/bench_rest.py
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request

from _common import ROOT, compare_rounds, paired, setup_django, start_server

N = int(os.environ.get("BENCH_N", "300"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "9"))
SAMPLE = 200


class Counts:
    """The REST server's request counts (it runs in another process)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def clear(self) -> None:
        urllib.request.urlopen(urllib.request.Request(self.url + "/__clear__", b"[]")).read()

    def read(self) -> tuple[int, int]:
        with urllib.request.urlopen(self.url + "/__stats__") as answer:
            found = json.load(answer)
        return found["requests"], found["bytes"]


def per_call(counts: Counts, fn, n: int = SAMPLE) -> tuple[float, float, float]:
    """HTTP requests and request-body bytes per call of ``fn`` (counted by the server), and
    this process's CPU microseconds per call (the client's own cost; the server is in
    another process)."""
    fn()  # loads, connections
    counts.clear()
    started = time.process_time()
    for _ in range(n):
        fn()
    cpu = (time.process_time() - started) / n * 1e6
    requests, size = counts.read()
    return requests / n, size / n, cpu


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from tests.upstash.server import TOKEN

    server = start_server()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.upstash.server", str(server.port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    rest = Counts(url)
    try:
        setup_django(None, atomicops={"REST_URL": url, "REST_TOKEN": TOKEN})
        import upstash_ratelimit.limiter as limiter
        from upstash_ratelimit import FixedWindow, Ratelimit
        from upstash_redis import Redis

        import atomicops
        from atomicops import Lock

        limiter.FixedWindow.SCRIPT = limiter.FixedWindow.SCRIPT.replace(
            "#!lua flags=allow-key-locking", "#!lua"
        )
        sdk = Redis(url, TOKEN, allow_telemetry=False)
        theirs = Ratelimit(redis=sdk, limiter=FixedWindow(max_requests=10**9, window=60))
        contenders = {
            "atomicops.fixed_window (own client)": lambda: atomicops.fixed_window(
                "bench", 10**9, 60_000
            ),
            "atomicops.fixed_window (client=SDK)": lambda: atomicops.fixed_window(
                "bench-sdk", 10**9, 60_000, client=sdk
            ),
            "upstash-ratelimit FixedWindow": lambda: theirs.limit("bench-theirs"),
        }
        assert atomicops.fixed_window("check", 10, 60_000).allowed
        assert theirs.limit("check").allowed

        requests = {name: per_call(rest, fn) for name, fn in contenders.items()}
        rates = compare_rounds(contenders, N, ROUNDS)
        anchor = "upstash-ratelimit FixedWindow"
        print(f"\nfixed window over REST, {N} hits x {ROUNDS} rounds, local REST server")
        for name, values in rates.items():
            per, size, cpu = requests[name]
            ratio = paired(values, rates[anchor])
            print(
                f"  {name:<38} {statistics.median(values):>7,.0f} hits/s  ratio {ratio:.2f}  "
                f"{per:.2f} requests/hit  {size:,.0f} bytes/hit  {cpu:,.0f} us CPU/hit"
            )

        counter = per_call(rest, lambda: atomicops.bounded_incr("bench-n", 10**9))

        def lock_cycle() -> None:
            lock = Lock("bench-lock", 10)
            assert lock.acquire(blocking=False)
            lock.release()

        cycle = per_call(rest, lock_cycle)
        print(f"  bounded_incr: {counter[0]:.2f} requests/call, ~{counter[1]:,.0f} bytes")
        print(f"  Lock acquire + release: {cycle[0]:.2f} requests")
        # After SCRIPT FLUSH: the one call that falls back.
        import redis

        redis.Redis(port=server.port).script_flush()
        rest.clear()
        atomicops.bounded_incr("bench-n", 10**9)
        print(f"  bounded_incr right after SCRIPT FLUSH: {rest.read()[0]} requests")
    finally:
        process.terminate()
        process.wait()
        server.stop()


if __name__ == "__main__":
    main()
