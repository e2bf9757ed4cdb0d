"""What observability costs a call: ``bounded_incr`` with and without the sinks.

Contenders, interleaved round by round on one connection to one redis-server:

* ``off``: no sink attached (what a project without prometheus_client and
  opentelemetry-api gets: the hook is None);
* ``prometheus``: the Prometheus sink (calls, latency histogram...), the default when
  prometheus_client is installed;
* ``prometheus + otel (no SDK)``: also the OpenTelemetry sink following the global
  provider, with none set (opentelemetry-api installed, no SDK set up: no span is made);
* ``prometheus + otel (SDK, no export)``: an SDK tracer provider that records spans and
  drops them (sampling on, no exporter): the span objects' own cost.

The timeline (dashboard across processes) is not a contender: it reads the per-process
counters from its thread and adds nothing to a call. Target: ``prometheus`` under 5 %
slower than ``off``. Rounds are short (``BENCH_N`` calls) and many, so
each contender's round runs right after the others' under the same load. Printed per
contender: the median time per call, the paired ratio
(median over rounds of off's time / its time; 1.0 = as fast), this process's CPU per call,
and the CPU it adds to ``off`` as a share of a call's time: on a shared machine the wall
clock moves by more than the hook costs, while the CPU it adds is what it really costs.
Run:
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


def main() -> None:
    server = start_server()
    try:
        setup_django(server.url)
        import redis

        import atomicops
        from atomicops.ops import metrics, observe, tracing

        client = redis.Redis.from_url(server.url)
        prometheus = metrics.default_sink()
        no_sdk = tracing.TracingSink()
        sdk = None
        try:
            from opentelemetry.sdk.trace import TracerProvider

            sdk = tracing.TracingSink(TracerProvider().get_tracer("bench"))
        except ImportError:
            pass

        def batch(sinks: tuple, events: tuple):
            # Attach once per round, not per call: the round runs N calls.
            def run() -> None:
                observe.attach(sinks, events)
                for _ in range(N):
                    atomicops.bounded_incr("bench:metrics", BIG, client=client)

            return run

        contenders = {
            "off": ((), ()),
            "prometheus": ((prometheus,), (prometheus,)),
            "prometheus + otel (no SDK)": ((prometheus, no_sdk), (prometheus,)),
        }
        if sdk is not None:
            contenders["prometheus + otel (SDK, no export)"] = ((prometheus, sdk), (prometheus,))
        wall: dict[str, list[float]] = {name: [] for name in contenders}
        cpu: dict[str, list[float]] = {name: [] for name in contenders}
        for sinks in contenders.values():  # warm up: connection, label children, caches
            observe.attach(*sinks)
            for _ in range(200):
                atomicops.bounded_incr("bench:metrics", BIG, client=client)
        names = list(contenders)
        for index in range(ROUNDS):
            # Each round starts with another contender: none always follows the same one.
            shift = index % len(names)
            for name in names[shift:] + names[:shift]:
                observe.attach(*contenders[name])
                started, cpu_started = time.perf_counter(), time.process_time()
                for _ in range(N):
                    atomicops.bounded_incr("bench:metrics", BIG, client=client)
                wall[name].append((time.perf_counter() - started) / N * 1e6)
                cpu[name].append((time.process_time() - cpu_started) / N * 1e6)
        observe.attach()
        print(f"\nbounded_incr, {N} calls per round, {ROUNDS} rounds, one connection")
        print(
            f"  {'':<38} {'µs/call':>8} {'paired':>7} {'client CPU µs/call':>19} {'extra CPU':>10}"
        )
        for name in contenders:
            # Paired: the median over rounds of off's time / this one's (1.0 = as fast).
            ratio = statistics.median(o / t for o, t in zip(wall["off"], wall[name], strict=True))
            extra = statistics.median(t - o for o, t in zip(cpu["off"], cpu[name], strict=True))
            print(
                f"  {name:<38} {statistics.median(wall[name]):8.1f} {ratio:7.3f} "
                f"{statistics.median(cpu[name]):19.1f} {extra:+9.1f}  "
                f"({extra / statistics.median(wall['off']) * 100:+.1f} % of a call)"
            )
        client.close()
    finally:
        from atomicops.ops import timeline

        timeline.flusher.stop(flush=False)  # its server is about to go
        server.stop()


if __name__ == "__main__":
    main()
