"""The background runner: the threads that drive every flow that mostly waits (renewals).

A renewal (a lease's, a claim's) is a flow that pauses for a third of a lease, makes one
round trip, and pauses again. Giving each one a thread of its own would cost a thread
start per lock and per request. Here one scheduler thread per process keeps every paused
flow in a heap of due times, asleep until the earliest, and resumes each when due: it
runs the flow's own Python up to its next operation. The round trips (:class:`Send`, a
cluster's :class:`Refresh`) go to a *lane*: one thread per server with round trips in
flight, which performs them as :func:`atomicops.engine.run.run` does (an atomicops
error from the wire thrown into the flow the same way) and hands the flow back to the
heap at its next pause. Async code needs none of this: a task per flow
(``engine.run.arun``) costs microseconds.

Why lanes and not one thread for everything: a server that does not answer holds a
round trip for its client's socket timeout (``SOCKET_TIMEOUT``, 5 s by default; the
connect timeout when it cannot be reached), and a client a caller passes in may keep
redis-py's retry, which made it about 8 s with a 0.4 s timeout. On one shared thread a
renewal would wait behind every stuck one due before it: k leases on a dead cluster node
could cost the healthy ones k timeouts, and their two thirds of a lease in hand. With a
lane per server, renewals on other servers do not wait at all, and those on the stuck
server would fail anyway. One server, the common case, means two threads in all; a lane
with nothing to do for :data:`LANE_IDLE` seconds ends.

:func:`start` runs a flow's first step in the calling thread, up to its first ``yield``
(no I/O: only lanes perform round trips), so a flow that starts with a pause, as
renewals do, is parked without waking any thread. :meth:`Job.stop` ends a flow the way
cancelling a task does: it is closed at its ``yield`` (``GeneratorExit``), at once when
it is parked, else once its round trip comes back, whose reply is then never sent to
it. A flow that yields ``Pause(..., until=event)`` is resumed when the pause is over,
and sent whether ``event`` is set by then; setting the event wakes nothing (stop the job
for that).

A forked child inherits none of the threads nor the parent's flows (the parent renews
its own leases): :func:`os.register_at_fork` empties the runner in the child, which
starts threads of its own at its first :func:`start` (a hook, not a pid check per
start: a ``getpid()`` costs a system call, and a claim is started per request).
"""

from __future__ import annotations

import collections
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
# Longest sleep of the scheduler at once (threading refuses waits above TIMEOUT_MAX).
_LONGEST_WAIT = 3600.0
# Seconds a lane waits for another round trip before its thread ends.
LANE_IDLE = 30.0

Name = str | Callable[[], str]


class _State(enum.Enum):
    PARKED = "parked"  # in the heap, waiting for its pause to end
    RUNNING = "running"  # in a lane's queue, or a thread is advancing it
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


class _Lane:
    """One server's round trips: a thread and its queue of jobs."""

    __slots__ = ("target", "queue", "cond")

    def __init__(self, target: Any, lock: threading.RLock) -> None:
        self.target = target  # kept alive while the lane is: its id() is the lane's key
        self.queue: collections.deque[Job] = collections.deque()
        self.cond = threading.Condition(lock)


class Runner:
    """The per-process scheduler thread, its heap of parked flows, and the lanes."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        # Also the child's side of a fork: a lock some parent thread held at the fork
        # would stay locked forever, and the parent's threads do not exist here.
        # Reentrant: a lease's finalizer stops its job, and a garbage collection that
        # finalizes one may run in a runner thread while it holds the lock.
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)  # the scheduler's
        self._heap: list[tuple[float, int, Job]] = []
        self._seq = itertools.count()
        self._stale = 0  # heap entries of jobs that are done
        self._thread: threading.Thread | None = None
        self._lanes: dict[int, _Lane] = {}
        self._running: set[Job] = set()  # queued in a lane or being advanced

    def _forked(self) -> None:
        # Every job inherited from the parent is the parent's: never driven here.
        inherited = [job for _, _, job in self._heap] + list(self._running)
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
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._schedule, name="atomicops-background", daemon=True
                )
                self._thread.start()
        self._route(job, op)
        return job

    def jobs(self) -> list[Job]:
        """The jobs not done yet (parked or running): for tests and introspection."""
        with self._lock:
            parked = [job for _, _, job in self._heap if job._state is _State.PARKED]
            return parked + [job for job in self._running if not job.done]

    def lanes(self) -> list[Any]:
        """The targets (clients) that have a lane now: for tests and introspection."""
        with self._lock:
            return [lane.target for lane in self._lanes.values()]

    # -- any thread ---------------------------------------------------------------------

    def _route(self, job: Job, op: Any) -> None:
        """Send ``job`` where its next operation ``op`` is done: the heap for a pause, the
        server's lane for a round trip."""
        with self._lock:
            if job._stopped:
                self._done(job)
            elif isinstance(op, (Send, Refresh)):
                target = op.target if isinstance(op, Send) else op.client
                lane = self._lanes.get(id(target))
                if lane is None:
                    lane = _Lane(target, self._lock)
                    threading.Thread(
                        target=self._lane, args=(lane,), name="atomicops-background-io",
                        daemon=True,
                    ).start()  # fmt: skip
                    self._lanes[id(target)] = lane  # only once it has a thread
                job._op = op
                job._state = _State.RUNNING
                self._running.add(job)
                lane.queue.append(job)
                lane.cond.notify()
                return
            else:  # a pause; anything else is thrown back into the flow, when due now
                self._park(job, op)
                return
        self._close(job)

    def _stop(self, job: Job) -> None:
        with self._lock:
            if job._stopped or job._state is _State.DONE:
                job._stopped = True
                return
            job._stopped = True
            if job._state is _State.RUNNING:
                return  # its thread closes it when its round trip is back
            self._done(job)
            self._stale += 1
            if self._stale > COMPACT_AFTER and self._stale * 2 > len(self._heap):
                self._heap = [entry for entry in self._heap if not entry[2].done]
                heapq.heapify(self._heap)
                self._stale = 0
        # Parked: nobody else touches the generator now. Closing it here rather than in
        # a runner thread costs no wake-up.
        self._close(job)

    @staticmethod
    def _close(job: Job) -> None:
        # A flow that will not close is a bug to log, not an error for the release()
        # that stopped it.
        try:
            job._flow.close()
        except Exception:
            logger.exception("atomicops: closing background job %s failed", job.name)

    def _step(self, job: Job) -> None:
        """Do the job's pending operation, feed the result to its flow, route what the
        flow yields next. Only the thread that holds the job (RUNNING) calls this."""
        op = job._op
        replies: Any = None
        error: BaseException | None = None
        with self._lock:
            stopped = job._stopped
        if not stopped:
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
            with self._lock:
                stopped = job._stopped  # a reply read after stop() is never acted on
        if stopped:
            with self._lock:
                self._done(job)
            self._close(job)
            return
        try:
            op = job._flow.send(replies) if error is None else job._flow.throw(error)
        except StopIteration:
            with self._lock:
                self._done(job)
            return
        except BaseException:  # the runner's threads must not die of one flow
            logger.exception("atomicops: background job %s failed", job.name)
            with self._lock:
                self._done(job)
            self._close(job)
            return
        self._route(job, op)

    # -- under self._lock ---------------------------------------------------------------

    def _park(self, job: Job, op: Any) -> None:
        """Put ``job`` in the heap: until its pause ends, or now for any other op."""
        job._op = op
        job._state = _State.PARKED
        self._running.discard(job)
        due = time.monotonic()
        if isinstance(op, Pause) and not (op.until is not None and op.until.is_set()):
            due += op.seconds
        entry = (due, next(self._seq), job)
        heapq.heappush(self._heap, entry)
        # Wake the scheduler only when it sleeps past this entry: most claims end long
        # before their first renewal, and a wake-up per request would cost a switch.
        if self._heap[0] is entry and threading.current_thread() is not self._thread:
            self._cond.notify()

    def _done(self, job: Job) -> None:
        job._state = _State.DONE
        self._running.discard(job)

    # -- the scheduler thread -----------------------------------------------------------

    def _next_due(self) -> Job:
        with self._lock:
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
                self._running.add(job)
                return job

    def _schedule(self) -> None:
        while True:
            self._guarded_step(self._next_due())

    def _guarded_step(self, job: Job) -> None:
        # _step guards the flow's own code; this, the runner's (a thread that cannot be
        # started): the job is lost, the thread carries on with the others.
        try:
            self._step(job)
        except BaseException:
            logger.exception("atomicops: background job %s failed", job.name)
            with self._lock:
                self._done(job)
            self._close(job)

    # -- a lane's thread ----------------------------------------------------------------

    def _lane(self, lane: _Lane) -> None:
        while True:
            with self._lock:
                while not lane.queue:
                    lane.cond.wait(LANE_IDLE)
                    if not lane.queue and self._lanes.get(id(lane.target)) is lane:
                        del self._lanes[id(lane.target)]
                        return
                job = lane.queue.popleft()
            self._guarded_step(job)


runner = Runner()
if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=runner._forked)


def start(flow: Flow[Any], name: Name) -> Job:
    """Drive ``flow`` on this process's background runner (see :meth:`Runner.start`)."""
    return runner.start(flow, name)
