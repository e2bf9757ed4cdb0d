"""The background runner: one daemon thread per process drives every flow that mostly waits.

A renewal (a lease's, a claim's) is a flow that pauses for a third of a lease, makes one
round trip, and pauses again. Giving each one a thread of its own would cost a thread
start per lock and per request; here one thread drives any number of them: each flow
runs until it yields a :class:`~atomicops.engine.ops.Pause`, then waits in a heap of due
times, the thread asleep until the earliest. The round trips (:class:`Send`, a cluster's
:class:`Refresh`) are performed as :func:`atomicops.engine.run.run` performs them, and
an atomicops error from the wire is thrown into the flow the same way. Async code needs
none of this: a task per flow (``engine.run.arun``) costs microseconds.

:func:`start` runs a flow's first step in the calling thread, up to its first ``yield``
(no I/O: only the background thread performs round trips), so a flow that starts with a
pause, as renewals do, is parked without waking the thread. :meth:`Job.stop` ends a
flow the way cancelling a task does: it is closed at its ``yield`` (``GeneratorExit``),
at once when it is parked, else once its round trip comes back, whose reply is then
never sent to it. A flow that yields ``Pause(..., until=event)`` is resumed when the
pause is over, and sent whether ``event`` is set by then; setting the event does not
wake the thread (stop the job for that).

One thread, so one slow round trip delays the others. A server that does not answer
holds the thread for its client's socket timeout (``SOCKET_TIMEOUT``, 5 s by default; the
connect timeout when it cannot be reached): atomicops builds its clients without
redis-py's retry, but a client a caller passes in keeps its own, and redis-py's default
(three retries with backoff) makes such a round trip last about 8 s even with a 0.4 s
timeout. With one server that costs nothing extra: every renewal to it would fail too,
and once it answers again the queue drains in milliseconds. A renewal due at a third of
its lease has two thirds in hand, more than one default timeout for any lease above
7.5 s (``tests/test_background.py`` holds 1.5 s leases behind a 0.4 s stall). With
several servers (a cluster whose primary just died) a renewal waits behind every stuck
one due before it, one timeout each: k leases on the dead node can cost the healthy
ones k timeouts. Isolating them takes a thread per server with a round trip in flight
(worth it if many leases live on a cluster); the claims renewer this replaced had the
same property, a thread per lock did not (at a thread start per acquire).

A forked child inherits neither the thread nor the parent's flows (the parent renews its
own leases): :func:`os.register_at_fork` empties the runner in the child, which starts a
thread of its own at its first :func:`start` (a hook, not a pid check per start: a
``getpid()`` costs a system call, and a claim is started per request).
"""

from __future__ import annotations

import enum
import heapq
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from atomicops.engine import topology, wire
from atomicops.engine.ops import Flow, Pause, Refresh, Send
from atomicops.exceptions import AtomicOpsError

logger = logging.getLogger("atomicops")

# Stopped jobs leave their heap entries behind (dropped when they come due, a third of a
# lease later); past this many, and past half the heap, the heap is rebuilt without them.
# Most claims end long before their first renewal, so at many requests a second they
# would otherwise pile up in between.
COMPACT_AFTER = 1024
# Longest sleep of the thread at once (threading refuses waits above TIMEOUT_MAX).
_LONGEST_WAIT = 3600.0

Name = str | Callable[[], str]


class _State(enum.Enum):
    PARKED = "parked"  # in the heap, waiting for its pause to end
    RUNNING = "running"  # the background thread is advancing it
    DONE = "done"  # returned, raised, or stopped: never resumed again


class Job:
    """A flow driven by the background runner; :meth:`stop` ends it."""

    __slots__ = ("_name", "_flow", "_op", "_state", "_stopped", "_runner")

    def __init__(self, runner: Runner, flow: Flow[Any], name: Name) -> None:
        self._name = name
        self._runner = runner
        self._flow = flow
        self._op: Any = None  # what the flow yielded last, performed when it is resumed
        self._state = _State.RUNNING
        self._stopped = False

    def __repr__(self) -> str:
        return f"<Job {self.name} {self._state.value}>"

    @property
    def name(self) -> str:
        """What logs call the job: never a user-chosen name in clear."""
        return self._name if isinstance(self._name, str) else self._name()

    @property
    def done(self) -> bool:
        """Whether the flow has ended (returned, raised, or was stopped and closed)."""
        return self._state is _State.DONE

    def stop(self) -> None:
        """End the flow: closed now if it is paused, else after its round trip, whose
        reply it never sees. Idempotent, and safe from any thread."""
        self._runner._stop(self)


class Runner:
    """The per-process background thread and its heap of parked flows."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        # Also the child's side of a fork: a lock some parent thread held at the fork
        # would stay locked forever, and the parent's thread does not exist here.
        # Reentrant: a lease's finalizer stops its job, and a garbage collection that
        # finalizes one may run in this thread while it holds the lock.
        self._cond = threading.Condition(threading.RLock())
        self._heap: list[tuple[float, int, Job]] = []
        self._seq = itertools.count()
        self._stale = 0  # heap entries of jobs that are done
        self._thread: threading.Thread | None = None
        self._current: Job | None = None  # the job the thread is advancing

    def _forked(self) -> None:
        # Every job inherited from the parent is the parent's: never driven here.
        inherited = [job for _, _, job in self._heap]
        if self._current is not None:
            inherited.append(self._current)
        for job in inherited:
            job._state = _State.DONE
        self._reset()

    def start(self, flow: Flow[Any], name: Name) -> Job:
        """Drive ``flow`` in the background until it returns or is stopped.

        Its first step runs here, up to its first ``yield``. What the flow returns is
        dropped; an exception it raises is logged (under ``name``, or what ``name()``
        returns: a digest need not be computed per request for a log line that is rare)
        and ends it.
        """
        job = Job(self, flow, name)
        try:
            op = next(flow)
        except StopIteration:
            job._state = _State.DONE
            return job
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="atomicops-background", daemon=True
                )
                self._thread.start()
            self._park(job, op)
        return job

    def jobs(self) -> list[Job]:
        """The jobs not done yet (parked or running): for tests and introspection."""
        with self._cond:
            jobs = [job for _, _, job in self._heap if job._state is _State.PARKED]
            current = self._current
            if current is not None and not current.done:
                jobs.append(current)
            return jobs

    # -- under self._cond -------------------------------------------------------------

    def _park(self, job: Job, op: Any) -> None:
        """Put ``job`` in the heap: until its pause ends, or now for any other op."""
        job._op = op
        job._state = _State.PARKED
        due = time.monotonic()
        if isinstance(op, Pause) and not (op.until is not None and op.until.is_set()):
            due += op.seconds
        entry = (due, next(self._seq), job)
        heapq.heappush(self._heap, entry)
        # Wake the thread only when it sleeps past this entry: most claims end long
        # before their first renewal, and a wake-up per request would cost a switch.
        if self._heap[0] is entry and threading.current_thread() is not self._thread:
            self._cond.notify()

    @staticmethod
    def _done(job: Job) -> None:
        job._state = _State.DONE

    # -- any thread -------------------------------------------------------------------

    def _stop(self, job: Job) -> None:
        with self._cond:
            if job._stopped or job._state is _State.DONE:
                job._stopped = True
                return
            job._stopped = True
            if job._state is _State.RUNNING:
                return  # the thread closes it when its round trip is back
            self._done(job)
            self._stale += 1
            if self._stale > COMPACT_AFTER and self._stale * 2 > len(self._heap):
                self._heap = [entry for entry in self._heap if not entry[2].done]
                heapq.heapify(self._heap)
                self._stale = 0
        # Parked: nobody else touches the generator now. Closing it here rather than in
        # the thread costs the thread no wake-up. A flow that will not close is a bug to
        # log, not an error for the release() that stopped it.
        try:
            job._flow.close()
        except Exception:
            logger.exception("atomicops: closing background job %s failed", job.name)

    # -- the background thread --------------------------------------------------------

    def _next_due(self) -> Job:
        with self._cond:
            while True:
                while self._heap and self._heap[0][2]._state is not _State.PARKED:
                    heapq.heappop(self._heap)
                    self._stale = max(0, self._stale - 1)
                if not self._heap:
                    self._cond.wait()
                    continue
                due, _, job = self._heap[0]
                delay = due - time.monotonic()
                if delay > 0:
                    # A lease of years pauses longer than a lock's wait may: wake hourly.
                    self._cond.wait(min(delay, _LONGEST_WAIT))
                    continue
                heapq.heappop(self._heap)
                job._state = _State.RUNNING
                self._current = job
                return job

    def _loop(self) -> None:
        while True:
            job = self._next_due()
            try:
                self._advance(job)
            except BaseException:  # the one thread must not die of one flow
                logger.exception("atomicops: background job %s failed", job.name)
                with self._cond:
                    if not job.done:
                        self._done(job)
                job._flow.close()
            finally:
                with self._cond:
                    self._current = None

    def _advance(self, job: Job) -> None:
        """Perform the job's pending op and feed the flow until it pauses again."""
        flow, op = job._flow, job._op
        while True:
            replies: Any = None
            error: BaseException | None = None
            try:
                if isinstance(op, Pause):
                    replies = op.until is not None and op.until.is_set()
                elif isinstance(op, Send):
                    replies = wire.roundtrip(op)
                elif isinstance(op, Refresh):
                    replies = topology.refresh(op)
                else:  # nobody here performs a caller's own operations
                    error = TypeError(f"a background flow yielded {op!r}, no engine operation")
            except AtomicOpsError as exc:
                error = exc
            with self._cond:
                if job._stopped:  # a reply read after stop() is never acted on
                    self._done(job)
                    break
            try:
                op = flow.send(replies) if error is None else flow.throw(error)
            except StopIteration:
                with self._cond:
                    self._done(job)
                break
            if isinstance(op, Pause):
                with self._cond:
                    if not job._stopped:
                        self._park(job, op)
                        return
                    self._done(job)
                break
        flow.close()


runner = Runner()
if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=runner._forked)


def start(flow: Flow[Any], name: Name) -> Job:
    """Drive ``flow`` on this process's background thread (see :meth:`Runner.start`)."""
    return runner.start(flow, name)
