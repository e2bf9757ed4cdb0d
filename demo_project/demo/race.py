"""The race: N worker processes increment one counter, first with a pipeline, then in Lua.

Pipeline workers do what the seed's pipeline does: every round trip is one pipeline of
``SET key <value read last time + 1>`` and ``GET key`` (the read for the next round).
Two commands in one batch, one round trip, but not one atomic step: another worker's
``SET`` lands between this worker's ``GET`` and its next ``SET``, and one of the two
increments is lost. Lua workers send ``demo_incr`` (``lua/demo_incr.lua``): the same
``GET``, add, ``SET``, inside one script, so nothing runs in between.

Workers are separate processes (forked, so they share the parent's settings and
registry); they all start at a barrier and count their progress in shared memory for
the progress bar.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from atomicops.engine import connection
from atomicops.primitives.keys import prefixed
from demo_project.demo.scripts import script

INCR_SCRIPT = "demo_incr"
# Workers publish progress every this many increments: often enough for a smooth bar,
# rarely enough that the shared counter's lock costs nothing measurable.
PROGRESS_EVERY = 10


@dataclass(frozen=True)
class RaceResult:
    """One side of the race."""

    name: str
    expected: int
    final: int
    seconds: float

    @property
    def lost(self) -> int:
        return self.expected - self.final


def race_key(side: str) -> str:
    return prefixed("race", side)


def _context() -> Any:
    # Forked children inherit Django's settings and the registry; redis-py notices the
    # new pid and opens fresh connections in each child.
    return multiprocessing.get_context("fork")


def _report(progress: Any, done: int, increments: int) -> None:
    if done % PROGRESS_EVERY == 0 or done == increments:
        with progress.get_lock():
            progress.value += done - (done - 1) // PROGRESS_EVERY * PROGRESS_EVERY


def _pipeline_worker(key: str, increments: int, barrier: Any, progress: Any) -> None:
    client = connection.get_client()
    barrier.wait(30)
    last = int(client.get(key) or 0)
    for done in range(1, increments + 1):
        pipe = client.pipeline(transaction=False)
        pipe.set(key, last + 1)
        pipe.get(key)
        _, value = pipe.execute()
        last = int(value)
        _report(progress, done, increments)


def _lua_worker(key: str, increments: int, barrier: Any, progress: Any) -> None:
    incr = script(INCR_SCRIPT)
    barrier.wait(30)
    for done in range(1, increments + 1):
        incr(keys=[key], args=[1])
        _report(progress, done, increments)


def run_side(
    name: str,
    worker: Callable[..., None],
    workers: int,
    increments: int,
    on_progress: Callable[[int, int], None] | None = None,
) -> RaceResult:
    """Run ``workers`` processes of ``worker`` on a fresh key; return the count they left."""
    ctx = _context()
    client = connection.get_client()
    key = race_key(name)
    client.delete(key)
    barrier = ctx.Barrier(workers + 1)
    progress = ctx.Value("q", 0)
    processes = [
        ctx.Process(target=worker, args=(key, increments, barrier, progress), daemon=True)
        for _ in range(workers)
    ]
    for process in processes:
        process.start()
    total = workers * increments
    try:
        barrier.wait(60)
        started = time.perf_counter()
        while any(p.is_alive() for p in processes):
            if on_progress is not None:
                on_progress(progress.value, total)
            time.sleep(0.05)
        seconds = time.perf_counter() - started
    finally:
        for process in processes:
            process.join(5)
            if process.is_alive():
                process.kill()
    failed = [p.exitcode for p in processes if p.exitcode != 0]
    if failed:
        raise RuntimeError(f"{len(failed)} {name} worker(s) failed (exit codes {failed})")
    if on_progress is not None:
        on_progress(progress.value, total)
    final = int(client.get(key) or 0)
    client.delete(key)
    return RaceResult(name, total, final, seconds)


def run(
    workers: int, increments: int, on_progress: Callable[[str, int, int], None] | None = None
) -> tuple[RaceResult, RaceResult]:
    """Both sides, pipeline first; ``on_progress(side, done, total)`` draws the bar."""

    def reporter(side: str) -> Callable[[int, int], None] | None:
        if on_progress is None:
            return None
        return lambda done, total: on_progress(side, done, total)

    pipeline = run_side("pipeline", _pipeline_worker, workers, increments, reporter("pipeline"))
    lua = run_side("lua", _lua_worker, workers, increments, reporter("lua"))
    return pipeline, lua
