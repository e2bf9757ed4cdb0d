"""What observability costs a call: metrics on vs off, in one process, paired rounds.

Contenders, interleaved round by round on one connection to one redis-server:

* ``off``: ``PROMETHEUS: False`` (or prometheus_client not installed): calls are counted
  (the counts the dashboard shows are always kept) but not timed;
* ``metrics on``: what a project with prometheus_client installed gets by default: each
  call also timed into its script's bucket array (``planner.timed``), the collector
  registered (it works only when scraped: see "scrape" below);
* ``metrics on + any call sink``: a do-nothing call sink attached as well (what the sink
  protocol costs: such a call leaves the common round for the general flow);
* ``off again (A/A)``: the same as ``off``, as a control: its paired ratio is the noise;
* ``metrics on + otel (SDK, no export)``: an SDK tracer provider's sink that records
  spans and drops them (sampling on, no exporter): the span objects' own cost. Without a
  provider configured no sink is attached at all, so that case is ``metrics on``.

Workloads: ``bounded_incr`` (one script call) and ``Lock`` acquire + release (two calls,
and the lease's wait and hold timings). Rounds are short (``BENCH_N`` calls) and many, so
each contender's round runs right after the others' under the same load. Printed per
contender: the median time per call, the paired ratio (median over rounds of off's time /
its time: its rate relative to off's, 1.0 = as fast; target >= 0.98 for ``metrics on``),
this process's CPU per call and the CPU it adds to ``off`` as a share of a call's time.
Last, what one scrape of the default registry costs (it runs in the scraping request,
never in a call). Run:
    .venv/bin/python benchmarks/bench_metrics.py
"""

from __future__ import annotations

import os
import statistics
import time

from _common import setup_django, start_server

N = int(os.environ.get("BENCH_N", "500"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "151"))
BIG = 2**53 - 1


class NoSink:
    """A call sink that does nothing: the cost of the protocol alone."""

    def start(self, script):
        return None

    def fallback(self, state):
        pass

    def end(self, state, seconds, error):
        pass


def measure(title: str, work, contenders: dict, n: int) -> None:
    from atomicops.engine import planner
    from atomicops.ops import observe

    def use(name: str) -> None:
        timed, sinks = contenders[name]
        planner.timed = timed
        observe.attach(sinks, ())

    for name in contenders:  # warm up: connection, caches
        use(name)
        for _ in range(200):
            work()
    wall: dict[str, list[float]] = {name: [] for name in contenders}
    cpu: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for index in range(ROUNDS):
        # Each round starts with another contender: none always follows the same one.
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            use(name)
            started, cpu_started = time.perf_counter(), time.process_time()
            for _ in range(n):
                work()
            wall[name].append((time.perf_counter() - started) / n * 1e6)
            cpu[name].append((time.process_time() - cpu_started) / n * 1e6)
    print(f"\n{title}, {n} per round, {ROUNDS} rounds, one connection")
    print(f"  {'':<38} {'µs/op':>8} {'paired':>7} {'client CPU µs/op':>17} {'extra CPU':>10}")
    for name in contenders:
        # Paired: the median over rounds of off's time / this one's (1.0 = as fast).
        ratio = statistics.median(o / t for o, t in zip(wall["off"], wall[name], strict=True))
        extra = statistics.median(t - o for o, t in zip(cpu["off"], cpu[name], strict=True))
        print(
            f"  {name:<38} {statistics.median(wall[name]):8.1f} {ratio:7.3f} "
            f"{statistics.median(cpu[name]):17.1f} {extra:+9.1f}  "
            f"({extra / statistics.median(wall['off']) * 100:+.1f} % of an op)"
        )


def main() -> None:
    server = start_server()
    try:
        setup_django(server.url)
        import redis

        import atomicops
        from atomicops.engine import planner
        from atomicops.ops import metrics, observe, tracing

        client = redis.Redis.from_url(server.url)
        metrics.register()  # as observe.configure() does with metrics on
        contenders: dict[str, tuple[bool, tuple]] = {
            "off": (False, ()),
            "metrics on": (True, ()),
            "metrics on + any call sink": (True, (NoSink(),)),
            # The noise floor: the same as off, so its paired ratio is what chance gives.
            "off again (A/A)": (False, ()),
        }
        try:
            from opentelemetry.sdk.trace import TracerProvider

            sdk = tracing.TracingSink(TracerProvider().get_tracer("bench"))
            contenders["metrics on + otel (SDK, no export)"] = (True, (sdk,))
        except ImportError:
            pass

        def incr() -> None:
            atomicops.bounded_incr("bench:metrics", BIG, client=client)

        lock = atomicops.Lock("bench:lock", ttl=10, client=client)

        def lease() -> None:
            lock.acquire()
            lock.release()

        measure("bounded_incr", incr, contenders, N)
        measure(
            "Lock acquire + release",
            lease,
            {k: v for k, v in contenders.items() if "otel" not in k},
            max(N // 2, 1),
        )
        planner.timed = False
        observe.attach()

        from prometheus_client import REGISTRY, generate_latest

        scrapes = 200
        started = time.perf_counter()
        for _ in range(scrapes):
            body = generate_latest(REGISTRY)
        took = (time.perf_counter() - started) / scrapes * 1e3
        print(f"\none scrape of the default registry: {took:.2f} ms, {len(body):,} bytes")
        client.close()
    finally:
        from atomicops.ops import timeline

        timeline.flusher.stop(flush=False)  # its server is about to go
        server.stop()


if __name__ == "__main__":
    main()
