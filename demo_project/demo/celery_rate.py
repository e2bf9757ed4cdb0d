"""Four Celery workers, one rate: atomicops' global_rate_limit against Celery's rate_limit.

Celery's ``rate_limit`` is enforced by each worker node on its own, so N nodes run N
times the rate; ``global_rate_limit`` is one exact window in Redis that every node asks
before a body starts. :func:`run` starts the worker nodes (prefork, one process each,
their own process groups), sends the same tasks through both, and returns when each
task started, by node and by second.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 90.0


@dataclass(frozen=True)
class Side:
    """One task's run: when each start was decided (server ms) and on which node.

    For atomicops that is when the limiter admitted it (``request.atomicops_admitted_ms``),
    for Celery when its body began; ``bodies`` are when the bodies began, both sides.
    """

    label: str
    starts: list[tuple[int, str]]
    bodies: list[int]

    @property
    def most_in_one_second(self) -> int:
        return most_in_one_second([t for t, _ in self.starts])

    def per_second(self) -> list[Counter[str]]:
        """Starts in each second after the first, counted per node."""
        origin = min(t for t, _ in self.starts)
        seconds: list[Counter[str]] = []
        for t, node in sorted(self.starts):
            index = (t - origin) // 1000
            while len(seconds) <= index:
                seconds.append(Counter())
            seconds[index][node] += 1
        return seconds


def most_in_one_second(times: list[int]) -> int:
    """The most of ``times`` (ms) in one span [t, t + 1000)."""
    times = sorted(times)
    best = first = 0
    for last, t in enumerate(times):
        while t - times[first] >= 1000:
            first += 1
        best = max(best, last - first + 1)
    return best


def start_workers(count: int, url: str, logdir: str) -> list[subprocess.Popen[bytes]]:
    from demo_project.demo.celery_app import QUEUE

    env = dict(os.environ, REDIS_URL=url, DJANGO_SETTINGS_MODULE="demo_project.settings")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    workers = []
    for index in range(1, count + 1):
        log = open(Path(logdir, f"worker{index}.log"), "wb")  # noqa: SIM115
        workers.append(
            subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "demo_project.demo.celery_app", "worker",
                 "--pool=prefork", "-c", "1", "-n", f"demo{index}@%h", "-Q", QUEUE,
                 "--without-gossip", "--without-mingle", "-l", "warning"],
                cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True,
            )
        )  # fmt: skip
    return workers


def stop_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    for process in workers:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # the node and its pool child
            process.wait(10)


def wait_ready(app: object, count: int, workers: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    ready: set[str] = set()
    while len(ready) < count:
        if any(process.poll() is not None for process in workers):
            raise RuntimeError("a worker exited while starting (see its log)")
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(ready)} of {count} workers answered in time")
        for reply in app.control.ping(timeout=1.0):  # type: ignore[attr-defined]
            ready.update(name for name in reply if name.startswith("demo"))


def run(
    url: str, workers: int, tasks: int, rate: str, say: Callable[[str], None] = print
) -> list[Side]:
    """Start ``workers`` nodes, send ``tasks`` of each kind at ``rate``; the two sides."""
    os.environ["DEMO_CELERY_RATE"] = rate  # read by the app module, here and in workers
    from demo_project.demo.celery_app import app, celery_call, global_call

    app.conf.broker_url = app.conf.result_backend = url
    logdir = tempfile.mkdtemp(prefix="atomicops-demo-celery-")
    nodes = start_workers(workers, url, logdir)
    sides = []
    try:
        say(f"starting {workers} Celery worker nodes (logs in {logdir})...")
        wait_ready(app, workers, nodes)
        for label, task in (
            (f"atomicops global_rate_limit={rate!r}", global_call),
            (f"Celery rate_limit={rate!r}", celery_call),
        ):
            say(f"sending {tasks} tasks: {label}")
            results = [task.delay(n) for n in range(tasks)]
            starts, bodies = [], []
            for result in results:
                started = result.get(timeout=120)
                decided = started["admitted_ms"] or started["body_ms"]
                starts.append((int(decided), str(started["node"])))
                bodies.append(int(started["body_ms"]))
            sides.append(Side(label, starts, bodies))
    finally:
        stop_workers(nodes)
    shutil.rmtree(logdir, ignore_errors=True)  # kept when something failed
    return sides
