"""Several real processes for concurrency proofs (threads alone prove little under the GIL).

Children are forked, so they inherit Django's set-up and the registry; redis-py pools
notice the new pid and open their own connections.
"""

from __future__ import annotations

import multiprocessing
import queue as queue_module
import traceback
from collections.abc import Callable, Sequence
from typing import Any

_ctx = multiprocessing.get_context("fork")


def forget_kombu_after_fork() -> None:
    """Drop what kombu (Celery's transport) registered to run in every forked child of
    this process. A test that used Celery in-process (the Celery tests, the demo_celery
    command) leaves a broker pool behind, and a later test's forked child would run its
    clean-up: read a BRPOP reply from a Redis long stopped (or from another server that
    took its port) and hang before its target starts. The children here never use it."""
    from multiprocessing import util

    registry = util._afterfork_registry
    for key, obj in list(registry.items()):
        if type(obj).__module__.startswith("kombu"):
            registry.pop(key, None)


def _run(index: int, target: Callable, args: Sequence, barrier: Any, results: Any) -> None:
    try:
        barrier.wait(30)
        results.put((index, True, target(*args)))
    except BaseException:  # report everything, the parent decides
        results.put((index, False, traceback.format_exc()))


def run_processes(target: Callable, args_list: Sequence[Sequence], timeout: float = 120) -> list:
    """Run ``target(*args)`` in one process per entry, all released at once by a barrier.

    Returns the results in the order of ``args_list``; raises if any child failed.
    """
    results = _ctx.Queue()
    barrier = _ctx.Barrier(len(args_list))
    processes = [
        _ctx.Process(target=_run, args=(i, target, args, barrier, results), daemon=True)
        for i, args in enumerate(args_list)
    ]
    for process in processes:
        process.start()
    collected: dict[int, Any] = {}
    failures = []
    try:
        for _ in processes:
            index, ok, value = results.get(timeout=timeout)
            if ok:
                collected[index] = value
            else:
                failures.append(f"worker {index}:\n{value}")
    except queue_module.Empty:
        failures.append(f"workers did not finish within {timeout}s")
    finally:
        for process in processes:
            process.join(5)
            if process.is_alive():
                process.kill()
    if failures:
        raise AssertionError("\n".join(failures))
    return [collected[i] for i in range(len(args_list))]


class Background:
    """A process running ``target(stop_event, *args)`` until :meth:`stop`; returns its result."""

    def __init__(self, target: Callable, *args: Any) -> None:
        self._stop = _ctx.Event()
        self._results = _ctx.Queue()
        self._process = _ctx.Process(target=self._main, args=(target, args), daemon=True)

    def _main(self, target: Callable, args: Sequence) -> None:
        try:
            self._results.put((True, target(self._stop, *args)))
        except BaseException:
            self._results.put((False, traceback.format_exc()))

    def __enter__(self) -> Background:
        self._process.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._process.is_alive():
            self.stop()

    def stop(self, timeout: float = 30) -> Any:
        self._stop.set()
        ok, value = self._results.get(timeout=timeout)
        self._process.join(5)
        if not ok:
            raise AssertionError(f"background process failed:\n{value}")
        return value


def _work(index: int, target: Callable, args: Sequence, stop: Any, results: Any) -> None:
    try:
        results.put((index, True, target(index, stop, *args)))
    except BaseException:  # report everything, the parent decides
        results.put((index, False, traceback.format_exc()))


class Workers:
    """One process per ``args`` entry, each running ``target(index, stop_event, *args)``
    from ``with`` (or :meth:`start`) until :meth:`stop`, which returns their results in
    order and raises if any failed. The cluster and Sentinel load tests are made of it."""

    def __init__(self, target: Callable, args_list: Sequence[Sequence]) -> None:
        self.stop_event = _ctx.Event()
        self.results = _ctx.Queue()
        self.processes = [
            _ctx.Process(
                target=_work, args=(i, target, args, self.stop_event, self.results), daemon=True
            )
            for i, args in enumerate(args_list)
        ]

    def start(self) -> Workers:
        for process in self.processes:
            process.start()
        return self

    def __enter__(self) -> Workers:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop_event.set()
        for process in self.processes:
            process.join(1)
            if process.is_alive():
                process.kill()

    def stop(self, timeout: float = 60) -> list:
        self.stop_event.set()
        records: dict[int, Any] = {}
        failures = []
        try:
            for _ in self.processes:
                index, ok, value = self.results.get(timeout=timeout)
                if ok:
                    records[index] = value
                else:
                    failures.append(f"worker {index}:\n{value}")
        except queue_module.Empty:
            failures.append(f"workers did not finish within {timeout}s")
        if failures:
            raise AssertionError("\n".join(failures))
        return [records[i] for i in sorted(records)]
