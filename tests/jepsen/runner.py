"""One Jepsen-style run: ``python -m tests.jepsen.runner --workload W --nemesis N --seconds S``.

Starts its own servers on free ports (never the machine's Redis), forks ``--clients``
client processes that record every call, lets the nemesis hurt the servers for
``--seconds``, heals them, reads the final state, checks the history, and prints as its
last line one JSON object: ``workload``, ``nemesis``, ``wait``, ``control``, ``ops``
(completed operations: ok or fail), ``indeterminate`` (info: outcome unknown), ``valid``
and ``anomaly`` (null, or what was wrong with the smallest failing sub-history found).
Exit status 0 when valid, 1 when not, 2 when the harness itself failed (or the checker
gave no verdict).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from collections import Counter
from typing import Any

WORKLOADS = ("register", "counter", "lock")
NEMESES = ("none", "kill", "pause", "failover")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bin/jepsen", description=__doc__.split("\n")[0])
    parser.add_argument("--workload", choices=WORKLOADS, required=True)
    parser.add_argument("--nemesis", choices=NEMESES, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument(
        "--control",
        action="store_true",
        help="a non-atomic client-side read-then-write instead of the atomic operation",
    )
    parser.add_argument("--wait", action="store_true", help="ATOMICOPS WAIT_REPLICAS=1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--history", help="write every operation to this file (JSON lines)")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.clients < 1:
        parser.error("--seconds must be > 0 and --clients >= 1")
    return args


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    django.setup()


def run(args: argparse.Namespace) -> dict[str, Any]:
    from tests.jepsen import checker, nemesis, workloads
    from tests.multiproc import Workers
    from tests.servers import Server

    report: dict[str, Any] = {
        "workload": args.workload,
        "nemesis": args.nemesis,
        "wait": args.wait,
        "control": args.control,
        "clients": args.clients,
        "seconds": args.seconds,
    }
    target = nemesis.deployment(args.nemesis, args.wait).start()
    resource = None
    try:
        atomicops = {**target.settings(args.wait), "SOCKET_TIMEOUT": nemesis.SOCKET_TIMEOUT}
        extra: tuple[Any, ...] = ()
        if args.workload == "lock":
            resource = Server("jepsen-resource", nemesis.binary()).start()
            extra = (resource.url,)
        work = getattr(workloads, args.workload)
        clients = Workers(
            work, [(atomicops, args.control, args.seed, *extra) for _ in range(args.clients)]
        ).start()
        hurt = nemesis.Nemesis(args.nemesis, target)
        try:
            hurt.start()
            time.sleep(args.seconds)
        finally:
            hurt.finish()  # and heal: the final reads need a serving deployment
        histories = clients.stop(timeout=120)
        ops = [op for history in histories for op in history]
        report["faults"] = len(hurt.events)
        report["fault_log"] = [
            f"{what} [{start / 1e9:.6f}, {end / 1e9:.6f}]" for what, start, end in hurt.events
        ]
        calls = [op for op in ops if op.f != "section"]
        report["errors"] = dict(Counter(op.error for op in calls if op.error))
        report["ops"] = sum(1 for op in calls if op.type != "info")
        report["indeterminate"] = sum(1 for op in calls if op.type == "info")
        if not any(op.type == "ok" for op in calls):
            raise RuntimeError(f"no call succeeded, the run proves nothing: {report['errors']}")
        report["by_type"] = dict(Counter(f"{op.f}:{op.type}" for op in calls))
        if args.history:
            with open(args.history, "w") as out:
                for op in sorted(ops, key=lambda op: op.start):
                    out.write(json.dumps(op.to_dict()) + "\n")
        if args.workload == "register":
            verdict = checker.check_register(ops)
        elif args.workload == "counter":
            with target.primary().client(socket_timeout=5) as client:
                finals = workloads.counter_finals(client, ops)
            verdict = check_counters(ops, finals)
        else:
            assert resource is not None
            with resource.client() as client:
                log = workloads.resource_log(client)
            verdict = checker.check_lock(log, [op for op in ops if op.f == "section"])
        report["valid"] = verdict.valid
        report["anomaly"] = verdict.anomaly
        report["checker"] = verdict.stats
    finally:
        if resource is not None:
            resource.remove()
        target.remove()
    return report


def check_counters(ops: list[Any], finals: dict[str, int]) -> Any:
    from tests.jepsen import checker, workloads

    keys = checker.by_key(ops)
    totals: Counter[str] = Counter()
    first = None
    failing = []
    for key in sorted(keys, key=lambda k: int(k.rsplit(":", 1)[1])):
        verdict = checker.check_counter(keys[key], finals[key], workloads.COUNTER_LIMIT)
        totals.update({k: v for k, v in verdict.stats.items() if k != "limit"})
        totals["lost"] += max(0, verdict.stats["acknowledged"] - verdict.stats["final"])
        if not verdict.valid:
            assert verdict.anomaly is not None
            failing.append(f"{key}: {verdict.anomaly['kind']}")
            first = first or {**verdict.anomaly, "key": key}
    stats = {"keys": len(keys), "limit": workloads.COUNTER_LIMIT, **totals}
    if first is not None:
        first["keys_failing"] = len(failing)
        first["keys_failing_first"] = failing[:5]
        first["acknowledged_lost_at_least"] = totals["lost"]
        return checker.Verdict(False, first, stats)
    return checker.Verdict(True, None, stats)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    started = time.monotonic()
    try:
        setup_django()
        report = run(args)
    except Exception as exc:
        traceback.print_exc()
        report = {
            "workload": args.workload,
            "nemesis": args.nemesis,
            "wait": args.wait,
            "control": args.control,
            "ops": None,
            "indeterminate": None,
            "valid": None,
            "anomaly": None,
            "error": f"{type(exc).__name__}: {exc}"[:2000],
        }
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    print(json.dumps(report), flush=True)
    if report["valid"] is True:
        return 0
    if report["valid"] is False:
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
